/**
 * @sluice/local — run Sluice on your machine.
 */
export {
  type DynamoDBLocal,
  freePort,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  localClient,
  type StartOptions,
  startDynamoDBLocal,
} from './dynamodb-local.js';
export { LocalError, type LocalErrorCode } from './errors.js';
export { readStream } from './read-stream.js';
export {
  LOCAL_CONCURRENCY,
  LOCAL_PRINCIPAL_HEADER,
  type LocalServer,
  startLocalServer,
} from './server.js';
export {
  DynamoDBStreamsClient,
  type StreamReader,
  type StreamReaderOptions,
  startStreamReader,
} from './stream.js';
export { type WebhookOptions, webhookSender } from './webhook.js';
