/**
 * The construct's props, checked when it is created: a value that would synthesize a stack whose
 * functions fail on every call (a retention the handlers refuse), whose deployment fails (a
 * negative concurrency or throttle, an address SNS refuses), or whose dashboard reads nothing (a
 * service name its search cannot quote) is refused at synth, naming the prop. Unresolved tokens
 * are left to CloudFormation.
 */
import { Token } from 'aws-cdk-lib';
import type { SluiceProps } from './sluice.js';

/** The log levels the construct documents (Powertools' names). */
const LOG_LEVELS: readonly string[] = ['DEBUG', 'INFO', 'WARN', 'ERROR'];

/**
 * Service names: a CloudWatch dimension value (at most 255 characters) the dashboard's search
 * quotes as it is, and a Powertools service name.
 */
const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

const known = (value: unknown): boolean => value !== undefined && !Token.isUnresolved(value);

const isWhole = (value: number, least: number): boolean =>
  Number.isInteger(value) && value >= least;

/** Throws, naming the first prop whose value would deploy something broken. */
export function checkProps(props: SluiceProps): void {
  const refuse = (prop: string, value: unknown, what: string) => {
    const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
    throw new Error(`Sluice: ${prop} must be ${what}, not ${shown}`);
  };
  for (const prop of ['auditRetentionDays', 'usageRetentionDays'] as const) {
    const value = props[prop];
    if (known(value) && !isWhole(value as number, 0))
      refuse(prop, value, 'a whole number of days (0 or more)');
  }
  const concurrency = props.reservedConcurrency;
  if (known(concurrency) && !isWhole(concurrency as number, 1))
    refuse('reservedConcurrency', concurrency, 'a whole number, 1 or more');
  const throttle = props.throttle;
  if (throttle !== undefined) {
    const { rateLimit, burstLimit } = throttle;
    if (known(rateLimit) && !(Number.isFinite(rateLimit) && rateLimit > 0))
      refuse('throttle.rateLimit', rateLimit, 'a number of requests per second above 0');
    if (known(burstLimit) && !isWhole(burstLimit, 1))
      refuse('throttle.burstLimit', burstLimit, 'a whole number of requests, 1 or more');
  }
  if (known(props.logLevel) && !LOG_LEVELS.includes(props.logLevel as string))
    refuse('logLevel', props.logLevel, `one of ${LOG_LEVELS.join(', ')}`);
  if (known(props.serviceName) && !SERVICE_NAME.test(props.serviceName as string))
    refuse(
      'serviceName',
      props.serviceName,
      'letters, digits, ".", "_" and "-" (at most 255, starting with a letter or digit)',
    );
  if (known(props.alarmEmail) && props.alarmEmail !== '' && !EMAIL.test(props.alarmEmail as string))
    refuse('alarmEmail', props.alarmEmail, 'an email address');
}
