/**
 * The bench's counting middleware: every request a client sends, asking for
 * ReturnConsumedCapacity, and its capacity as AWS would bill it:
 *   - single-item writes and reads, queries: the units DynamoDB Local reports (it sizes items as
 *     AWS does);
 *   - a write whose condition fails: 1 WCU (AWS bills failed conditional writes; items < 1 KB);
 *   - TransactWriteItems: 2 WCU per item (DynamoDB Local reports 1 per item; AWS bills 2).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

export interface Meter {
  requests: number;
  wcu: number;
  rcu: number;
  /**
   * Items read: by queries and scans, their `ScannedCount` (what their RCU pays for); by GetItem
   * and BatchGetItem, the items they found.
   */
  itemsRead: number;
  /** Conditional writes sent to each item (`pk sk`), failed ones included. */
  writesByItem: Map<string, number>;
  reset(): void;
}

interface Capacity {
  CapacityUnits?: number;
  WriteCapacityUnits?: number;
  ReadCapacityUnits?: number;
}

const WRITES = new Set(['UpdateItemCommand', 'PutItemCommand', 'DeleteItemCommand']);

/** Counts requests and AWS-billed capacity on a client. */
export function meter(client: DynamoDBClient): Meter {
  const m: Meter = {
    requests: 0,
    wcu: 0,
    rcu: 0,
    itemsRead: 0,
    writesByItem: new Map(),
    reset() {
      m.requests = 0;
      m.wcu = 0;
      m.rcu = 0;
      m.itemsRead = 0;
      m.writesByItem.clear();
    },
  };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = context.commandName ?? '';
      const input = args.input as Record<string, unknown>;
      const items = Array.isArray(input.TransactItems) ? input.TransactItems.length : 1;
      input.ReturnConsumedCapacity = 'TOTAL';
      m.requests++;
      if (command === 'UpdateItemCommand') {
        const key = input.Key as Record<string, { S?: string }> | undefined;
        const item = `${key?.pk?.S} ${key?.sk?.S}`;
        m.writesByItem.set(item, (m.writesByItem.get(item) ?? 0) + 1);
      }
      try {
        const result = await next(args);
        const output = result.output as {
          ConsumedCapacity?: Capacity | Capacity[];
          ScannedCount?: number;
          Item?: unknown;
          Responses?: Record<string, unknown[]>;
        };
        const consumed = [output.ConsumedCapacity ?? []].flat();
        const units = consumed.reduce((sum, c) => sum + (c.CapacityUnits ?? 0), 0);
        if (command === 'TransactWriteItemsCommand') m.wcu += 2 * items;
        else if (WRITES.has(command)) m.wcu += units;
        else m.rcu += units;
        m.itemsRead += output.ScannedCount ?? 0;
        if (command === 'GetItemCommand' && output.Item) m.itemsRead += 1;
        if (command === 'BatchGetItemCommand')
          for (const found of Object.values(output.Responses ?? {})) m.itemsRead += found.length;
        return result;
      } catch (error) {
        const name = error instanceof Error ? error.name : '';
        if (name === 'ConditionalCheckFailedException') m.wcu += 1;
        if (name === 'TransactionCanceledException') m.wcu += 2 * items;
        throw error;
      }
    },
    { step: 'initialize', name: 'benchMeter' },
  );
  return m;
}
