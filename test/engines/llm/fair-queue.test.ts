/**
 * The LLM's wait queue is fair between tenants (issue 13: one client's chunked 500 000-character
 * summarize made another tenant's short request wait behind all of it). Order is asserted, not time.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlmQueueFullError, type ChatMessage } from '../../../src/engines/llm/chat-backend.ts';
import { FairQueue } from '../../../src/engines/llm/fair-queue.ts';
import { LocalLlm } from '../../../src/engines/llm/local-llm.ts';
import { withLlmTenant } from '../../../src/engines/llm/tenant.ts';
import { MODELS_DIR } from '../../helpers/paths.ts';

describe('FairQueue', () => {
  it('serves the least recently served tenant first, FIFO within a tenant, and forgets idle tenants', () => {
    const q = new FairQueue<string>();
    q.started('A'); // A's first request runs without waiting
    for (const x of ['a2', 'a3', 'a4']) q.push('A', x);
    q.push('B', 'b1');
    q.push('C', 'c1');
    q.push('B', 'b2');
    expect(q.size).toBe(6);
    expect(q.sizeOf('A')).toBe(3);
    const order: string[] = [];
    for (let r = q.shift(); r; r = q.shift()) order.push(r.item);
    // B and C have had no turn yet; then the rotation A, B, A, A.
    expect(order).toEqual(['b1', 'c1', 'a2', 'b2', 'a3', 'a4']);
    expect(q.size).toBe(0);
    // A removed waiter leaves no trace; drain empties everything.
    q.push('D', 'd1');
    expect(q.remove('D', 'd1')).toBe(true);
    expect(q.remove('D', 'd1')).toBe(false);
    q.push('E', 'e1');
    expect(q.drain()).toEqual(['e1']);
    expect(q.size).toBe(0);
  });
});

describe('LocalLlm queue between tenants (qwen2-mini-random, one sequence)', () => {
  let llm: LocalLlm;
  const DIR = join(MODELS_DIR, 'qwen2-mini-random');
  beforeAll(async () => {
    llm = await LocalLlm.load({ modelPath: join(DIR, 'qwen2-mini-random-f32.gguf'), modelId: 'qwen2-mini-random', contextSize: 512, sequences: 1, maxQueue: 4, threads: 1 });
  });
  afterAll(async () => {
    await llm?.close();
  });

  it("a tenant with a backlog does not delay another tenant's short call behind it; each tenant's share of the queue is its own", async () => {
    const msgs: ChatMessage[] = [{ role: 'user', content: 'Summarise part of a long meeting transcript.' }];
    const done: string[] = [];
    const track = (name: string, p: Promise<unknown>) => p.then(() => done.push(name));
    // Tenant A (from the request context, as the HTTP admission sets it): one running + 4 waiting.
    const a = withLlmTenant('ip:10.0.0.1', () => Array.from({ length: 5 }, (_, i) => track(`A${i}`, llm.chat(msgs, { maxTokens: 24 }))));
    expect(llm.running).toBe(1);
    expect(llm.queueDepth).toBe(4);
    // A's share is full: A is refused, B is not.
    await expect(withLlmTenant('ip:10.0.0.1', () => llm.chat(msgs, { maxTokens: 4 }))).rejects.toBeInstanceOf(LlmQueueFullError);
    const b = track('B', llm.chat(msgs, { maxTokens: 4, tenant: 'account:b' }));
    expect(llm.queueDepth).toBe(5);
    await Promise.all([...a, b]);
    // B goes right after A's running call, not after A's whole backlog.
    expect(done).toEqual(['A0', 'B', 'A1', 'A2', 'A3', 'A4']);
    expect(llm.queueDepth).toBe(0);
    expect(llm.running).toBe(0);
  });
});
