/** The ready-made stack: `npx cdk deploy`. */
import { CfnOutput, Stack } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Sluice, type SluiceProps } from './sluice.js';

export class SluiceStack extends Stack {
  readonly sluice: Sluice;

  constructor(
    scope: Construct,
    id: string,
    props: SluiceProps & { readonly env?: { account?: string; region?: string } } = {},
  ) {
    super(scope, id, props.env ? { env: props.env } : {});
    this.sluice = new Sluice(this, 'Sluice', props);
    new CfnOutput(this, 'ApiUrl', { value: this.sluice.url, description: 'Sluice API base URL' });
    new CfnOutput(this, 'TableName', {
      value: this.sluice.table.tableName,
      description: 'Sluice DynamoDB table',
    });
    new CfnOutput(this, 'AlertBusName', {
      value: this.sluice.alertBus.eventBusName,
      description: 'EventBridge bus of budget alerts (detail-type "Sluice Budget Threshold")',
    });
  }
}
