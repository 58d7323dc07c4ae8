/**
 * API Gateway HTTP API (payload 2.0) events and Lambda contexts, made outside AWS: what the local
 * server makes of each HTTP request and what the in-process client makes of each call, so that
 * both hand the handlers what API Gateway and Lambda would. Never imported by a handler.
 */
import { randomUUID } from 'node:crypto';
import type {
  APIGatewayEventRequestContextIAMAuthorizer,
  APIGatewayProxyEventV2,
  Context,
} from 'aws-lambda';
import { type Route, routeKey } from '../routes.js';

/** One request as a route's handler is to get it. */
export interface ApiRequest {
  /** The route that serves it (its method and path template name the event's `routeKey`). */
  readonly route: Pick<Route, 'method' | 'path'>;
  /** The path as requested, e.g. `/v1/usage` (not decoded). */
  readonly path: string;
  /** The query string without its `?` ('' for none). */
  readonly query: string;
  /** By name, in lower case. */
  readonly headers: Readonly<Record<string, string>>;
  /** The body as text ('' for none). */
  readonly body: string;
  /** The `{name}` segments of the path template, as matched. */
  readonly pathParameters?: Readonly<Record<string, string>>;
  /** The IAM principal ARN the authorizer would report; none: no authorizer in the event. */
  readonly principal?: string | undefined;
  /** The host the request addressed. */
  readonly domainName: string;
  readonly sourceIp: string;
  /** e.g. `HTTP/1.1`. */
  readonly protocol: string;
}

/** The event API Gateway sends the handler for `request`. */
export function apiEvent(request: ApiRequest): APIGatewayProxyEventV2 {
  const { route, path, query, headers, body, pathParameters, principal } = request;
  const now = new Date();
  return {
    version: '2.0',
    routeKey: routeKey(route),
    rawPath: path,
    rawQueryString: query,
    headers: { ...headers },
    ...(query
      ? { queryStringParameters: Object.fromEntries(new URLSearchParams(query).entries()) }
      : {}),
    ...(pathParameters && Object.keys(pathParameters).length
      ? { pathParameters: { ...pathParameters } }
      : {}),
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: request.domainName,
      domainPrefix: 'local',
      http: {
        method: route.method,
        path,
        protocol: request.protocol,
        sourceIp: request.sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      ...(principal ? { authorizer: iamAuthorizer(principal) } : {}),
      routeKey: routeKey(route),
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    ...(body.length > 0 ? { body } : {}),
    isBase64Encoded: false,
  };
}

/** What API Gateway's IAM authorizer puts in the request context for `userArn`. */
export function iamAuthorizer(userArn: string): APIGatewayEventRequestContextIAMAuthorizer {
  const accountId = /^arn:[\w-]+:(?:iam|sts)::(\d{12}):/.exec(userArn)?.[1] ?? '';
  return {
    iam: {
      accessKey: 'local',
      accountId,
      callerId: 'local',
      cognitoIdentity: null,
      principalOrgId: '',
      userArn,
      userId: 'local',
    },
  };
}

/** A Lambda context for one invocation of `functionName` that may run `timeoutMs`. */
export function invocationContext(
  functionName: string,
  requestId: string,
  timeoutMs: number,
): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '256',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/** Matches a path against a route's template; `{name}` segments become path parameters. */
export function matchPath(template: string, path: string): Record<string, string> | undefined {
  const want = template.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return undefined;
  const params = new Map<string, string>();
  for (const [i, part] of want.entries()) {
    const value = got[i] ?? '';
    const param = /^\{(\w+)\}$/.exec(part);
    if (param?.[1] && value !== '') params.set(param[1], value);
    else if (part !== value) return undefined;
  }
  return Object.fromEntries(params);
}
