/** The account tiers and their fixed limits (the reference API's; not configurable). */
const MB = 1024 * 1024;

export type Tier = 'anonymous' | 'free' | 'paid';

export interface TierLimits {
  /** Largest accepted upload (413 above). */
  maxFileBytes: number;
  /** Requests (uploads, streams, AI calls) running at once per account, or per IP for anonymous. */
  concurrent: number;
}

/** The reference API's tiers. */
export const DEFAULT_TIER_LIMITS: Readonly<Record<Tier, TierLimits>> = {
  anonymous: { maxFileBytes: 100 * MB, concurrent: 1 },
  free: { maxFileBytes: 500 * MB, concurrent: 2 },
  paid: { maxFileBytes: 2048 * MB, concurrent: 5 },
};
