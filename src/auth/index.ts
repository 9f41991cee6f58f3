export * from './access-control.ts';
export * from './concurrency-slots.ts';
export * from './tiers.ts';
export * from './keys.ts';
export * from './credit-ledger.ts';
export * from './lease-heartbeat.ts';
