/**
 * The HTTP API: one route per entry of the route table, each to its function with IAM
 * authorization, on a `$default` stage with throttling and JSON access logs.
 */

import { type FunctionName, routes } from '@sluice/lambdas/routes';
import { RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  HttpMethod,
  HttpStage,
  LogGroupLogDestination,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

/** What the API takes from the construct's props. */
export interface ApiOptions {
  /** How long access logs are kept. */
  readonly logRetention: logs.RetentionDays;
  /** Stage throttling: steady requests per second and burst across all routes. */
  readonly throttle: { readonly rateLimit: number; readonly burstLimit: number };
}

/** The API and its stage, every route of the route table on it. */
export function sluiceApi(
  scope: Construct,
  functions: ReadonlyMap<FunctionName, lambda.Function>,
  options: ApiOptions,
): { api: HttpApi; stage: HttpStage } {
  const accessLogs = new logs.LogGroup(scope, 'AccessLogs', {
    retention: options.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const api = new HttpApi(scope, 'Api', {
    description: 'Sluice: rate limits and budgets for LLM calls',
    createDefaultStage: false,
  });
  const stage = new HttpStage(scope, 'Stage', {
    httpApi: api,
    stageName: '$default',
    autoDeploy: true,
    throttle: options.throttle,
    accessLogSettings: {
      destination: new LogGroupLogDestination(accessLogs),
      format: AccessLogFormat.jsonWithStandardFields(),
    },
  });
  addRoutes(api, functions);
  return { api, stage };
}

/** Each route to its function (one integration per function), IAM-authorized. */
function addRoutes(api: HttpApi, functions: ReadonlyMap<FunctionName, lambda.Function>): void {
  const authorizer = new HttpIamAuthorizer();
  const integrations = new Map<string, HttpLambdaIntegration>();
  for (const route of routes) {
    const fn = functions.get(route.function) as lambda.Function;
    integrations.set(
      route.function,
      integrations.get(route.function) ??
        new HttpLambdaIntegration(`${route.function}-integration`, fn),
    );
    api.addRoutes({
      path: route.path,
      methods: [HttpMethod[route.method]],
      integration: integrations.get(route.function) as HttpLambdaIntegration,
      authorizer,
    });
  }
}
