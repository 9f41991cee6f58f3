export * from './bus.ts';
export { InProcessBus, type InProcessBusOptions } from './in-process-bus.ts';
export { NatsBus, SESSIONS_STREAM, type NatsBusOptions } from './nats-bus.ts';
export { createBus, type CreateBusOptions } from './create-bus.ts';
