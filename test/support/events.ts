/**
 * API Gateway HTTP API (payload 2.0) events as the IAM authorizer sends them to a handler:
 * the caller's principal is `requestContext.authorizer.iam.userArn`.
 */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';

export interface IamEventOptions {
  readonly method: string;
  /** The request's path, e.g. `/v1/admin/plans/gold`. */
  readonly path: string;
  /** The route's path template, e.g. `/v1/admin/plans/{plan}` (default: `path`). */
  readonly route?: string;
  readonly body?: unknown;
  /** The principal API Gateway authenticated; none: an event without an authorizer. */
  readonly userArn?: string | undefined;
  readonly headers?: Record<string, string>;
  readonly pathParameters?: Record<string, string>;
  readonly query?: Record<string, string>;
}

export function iamEvent(options: IamEventOptions): APIGatewayProxyEventV2 {
  const { method, path, userArn } = options;
  const routeKey = `${method} ${options.route ?? path}`;
  const account = userArn ? (/::(\d{12}):/.exec(userArn)?.[1] ?? '') : '123456789012';
  return {
    version: '2.0',
    routeKey,
    rawPath: path,
    rawQueryString: new URLSearchParams(options.query ?? {}).toString(),
    headers: { 'content-type': 'application/json', ...options.headers },
    ...(options.pathParameters ? { pathParameters: options.pathParameters } : {}),
    ...(options.query ? { queryStringParameters: options.query } : {}),
    requestContext: {
      accountId: account,
      apiId: 'api',
      domainName: 'api.execute-api.eu-west-1.amazonaws.com',
      domainPrefix: 'api',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '10.0.0.1', userAgent: 'test' },
      requestId: 'req-1',
      routeKey,
      stage: '$default',
      time: '03/Dec/2026:10:00:00 +0000',
      timeEpoch: 1_796_000_000_000,
      ...(userArn
        ? {
            authorizer: {
              iam: {
                accessKey: 'ASIAEXAMPLE',
                accountId: account,
                callerId: 'AROAEXAMPLE:session',
                cognitoIdentity: null,
                principalOrgId: 'o-example',
                userArn,
                userId: 'AROAEXAMPLE:session',
              },
            },
          }
        : {}),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    isBase64Encoded: false,
  } as unknown as APIGatewayProxyEventV2;
}
