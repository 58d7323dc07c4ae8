/**
 * The CDK app: `npx cdk deploy`.
 * Context (`-c key=value`): `alarmEmail` subscribes an address to the alarms; `stackName`
 * (default "Sluice").
 */

import { SluiceStack } from '@sluice/cdk';
import { App } from 'aws-cdk-lib';

const app = new App();
const alarmEmail = app.node.tryGetContext('alarmEmail') as string | undefined;
const { CDK_DEFAULT_ACCOUNT: account, CDK_DEFAULT_REGION: region } = process.env;
new SluiceStack(app, (app.node.tryGetContext('stackName') as string | undefined) ?? 'Sluice', {
  ...(alarmEmail ? { alarmEmail } : {}),
  ...(account && region ? { env: { account, region } } : {}),
});
app.synth();
