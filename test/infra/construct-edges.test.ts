/**
 * The construct under hostile use: props that would deploy something broken, two constructs in
 * one stack, and a role that could reach data of another kind through a literal `*` key.
 */
import { Sluice, SluiceStack } from '@sluice/cdk';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { allows, type Statement } from '../support/iam-proxy.js';

const synth = (props: ConstructorParameters<typeof Sluice>[2]) => {
  const app = new App();
  const stack = new Stack(app, 'Props');
  new Sluice(stack, 'Sluice', props);
  return Template.fromStack(stack);
};

describe('the construct under hostile use', () => {
  it('refuses props that would deploy something broken at synth, naming the prop', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ auditRetentionDays: -1 }, /auditRetentionDays/],
      [{ auditRetentionDays: 1.5 }, /auditRetentionDays/],
      [{ usageRetentionDays: -3 }, /usageRetentionDays/],
      [{ usageRetentionDays: Number.NaN }, /usageRetentionDays/],
      [{ reservedConcurrency: -1 }, /reservedConcurrency/],
      [{ reservedConcurrency: 0 }, /reservedConcurrency/],
      [{ reservedConcurrency: 2.5 }, /reservedConcurrency/],
      [{ throttle: { rateLimit: -1, burstLimit: 10 } }, /throttle/],
      [{ throttle: { rateLimit: 10, burstLimit: 1.5 } }, /throttle/],
      [{ logLevel: 'LOUD' }, /logLevel/],
      [{ logLevel: 'debug' }, /logLevel/],
      [{ serviceName: 'a"b' }, /serviceName/],
      [{ serviceName: "a'b" }, /serviceName/],
      [{ serviceName: '' }, /serviceName/],
      [{ alarmEmail: 'not an address' }, /alarmEmail/],
    ];
    // Each is refused with a message naming the prop (not synthesized, nor refused by CDK for
    // reasons of its own).
    const unclear = bad.flatMap(([props, message]) => {
      try {
        synth(props as never);
        return [`${JSON.stringify(props)}: synthesized`];
      } catch (error) {
        return message.test(String(error)) ? [] : [`${JSON.stringify(props)}: ${String(error)}`];
      }
    });
    expect(unclear).toEqual([]);
    // What the defaults and the documented values synthesize still does.
    expect(() =>
      synth({
        auditRetentionDays: 30,
        usageRetentionDays: 0,
        reservedConcurrency: 10,
        throttle: { rateLimit: 0.5, burstLimit: 1 },
        logLevel: 'DEBUG',
        serviceName: 'team-a.sluice_1',
        alarmEmail: 'oncall@example.com',
      }),
    ).not.toThrow();
  });

  it('gives two Sluice constructs in one stack physical names of their own', () => {
    const app = new App();
    const stack = new Stack(app, 'Two');
    new Sluice(stack, 'Prod');
    new Sluice(stack, 'Staging');
    const template = Template.fromStack(stack);
    const names = (type: string, property: string) =>
      Object.values(template.findResources(type)).map(
        (r) => (r as { Properties: Record<string, string> }).Properties[property],
      );
    const dashboards = names('AWS::CloudWatch::Dashboard', 'DashboardName');
    const rules = names('AWS::CloudWatch::InsightRule', 'RuleName');
    expect(dashboards).toHaveLength(2);
    expect(new Set(dashboards).size).toBe(2);
    expect(rules).toHaveLength(4);
    expect(new Set(rules).size).toBe(4);
    // Names within CloudWatch's lengths (a dashboard's 255, a rule's 128), whatever the stack's
    // name (up to 128) and the construct's path, and still apart.
    const long = new Stack(new App(), 'S'.repeat(128));
    for (const id of ['A'.repeat(120), `${'A'.repeat(120)}2`]) new Sluice(long, id);
    const longTemplate = Template.fromStack(long);
    const longNames = (type: string, property: string) =>
      Object.values(longTemplate.findResources(type)).map(
        (r) => (r as { Properties: Record<string, string> }).Properties[property] as string,
      );
    const longDashboards = longNames('AWS::CloudWatch::Dashboard', 'DashboardName');
    const longRules = longNames('AWS::CloudWatch::InsightRule', 'RuleName');
    expect(Math.max(...longDashboards.map((n) => n.length))).toBeLessThanOrEqual(255);
    expect(Math.max(...longRules.map((n) => n.length))).toBeLessThanOrEqual(128);
    expect(new Set(longDashboards).size).toBe(2);
    expect(new Set(longRules).size).toBe(4);
    // The ready-made stack keeps the documented name: `<stack>-sluice`.
    const ready = Template.fromStack(new SluiceStack(new App(), 'Ready'));
    ready.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'Ready-sluice' });
  });

  it('keeps the usage function out of the deployment-wide roll-up', () => {
    const stack = new SluiceStack(new App(), 'Rollup');
    const template = Template.fromStack(stack);
    const TABLE = {
      'Fn::GetAtt': [stack.getLogicalId(stack.sluice.table.node.defaultChild as never), 'Arn'],
    };
    const statementsOf = (role: unknown) =>
      Object.values(
        template.findResources('AWS::IAM::Policy', {
          Properties: {
            Roles: [
              { Ref: stack.getLogicalId((role as never as Stack).node.defaultChild as never) },
            ],
          },
        }),
      ).flatMap(
        (p) =>
          (p as { Properties: { PolicyDocument: { Statement: Statement[] } } }).Properties
            .PolicyDocument.Statement,
      );
    const usage = statementsOf(stack.sluice.functions.get('usage')?.role);
    // An entity's own usage history: still read.
    expect(allows(usage, TABLE, { action: 'dynamodb:Query', pk: 'usage#key-1' })).toBe(true);
    // The roll-up of every entity together (`usage#*`) is the admin's overview, not a client's.
    expect(allows(usage, TABLE, { action: 'dynamodb:Query', pk: 'usage#*' })).toBe(false);
    const admin = statementsOf(stack.sluice.functions.get('admin')?.role);
    expect(allows(admin, TABLE, { action: 'dynamodb:Query', pk: 'usage#*' })).toBe(true);
    const aggregator = statementsOf(stack.sluice.aggregator.role);
    expect(allows(aggregator, TABLE, { action: 'dynamodb:UpdateItem', pk: 'usage#*' })).toBe(true);
  });
});
