/**
 * WebRTC configuration from the environment (loadConfig merges it into the one Config, `config.webrtc`):
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | `WEBRTC_ICE_SERVERS` | `[]` | JSON array of RTCIceServer (`{"urls": "stun:…"}`, TURN with `username`/`credential`), used by the server and handed to the web page; empty = host candidates only (LAN / same host) |
 * | `WEBRTC_PORT_MIN`, `WEBRTC_PORT_MAX` | unset | UDP port range for ICE (both or neither; open it in the firewall) |
 * | `WEBRTC_ANNOUNCED_IP` | unset | public IP written into the SDP answer instead of the host's own addresses (server behind NAT / in a container with forwarded ports) |
 */
import { isIP } from 'node:net';
import { z } from 'zod';

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface WebRtcConfig {
  iceServers: IceServer[];
  /** Inclusive UDP port range for ICE, or undefined = any ephemeral port. */
  portRange: [number, number] | undefined;
  /** Address announced in the SDP answer instead of the local ones. */
  announcedIp: string | undefined;
}

/** Same shape and message as config/config.ts's ConfigError (not imported, so that config.ts can import this file without a cycle). */
export class WebRtcConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'WebRtcConfigError';
  }
}

/** The variables this module reads. */
export const WEBRTC_ENV_NAMES = ['WEBRTC_ICE_SERVERS', 'WEBRTC_PORT_MIN', 'WEBRTC_PORT_MAX', 'WEBRTC_ANNOUNCED_IP'] as const;

const ICE_URL = /^(stun|stuns|turn|turns):[^\s]+$/;

const iceServerSchema = z.object({
  urls: z.union([
    z.string().regex(ICE_URL, 'urls must be stun:, stuns:, turn: or turns: URLs'),
    z.array(z.string().regex(ICE_URL, 'urls must be stun:, stuns:, turn: or turns: URLs')).min(1, 'urls must not be empty'),
  ]),
  username: z.string().optional(),
  credential: z.string().optional(),
});

const port = z.coerce.number({ message: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(65535, 'must be at most 65535');

const envSchema = z
  .object({
    WEBRTC_ICE_SERVERS: z
      .string()
      .optional()
      .transform((v, ctx) => {
        if (v === undefined) return [];
        let parsed: unknown;
        try {
          parsed = JSON.parse(v);
        } catch {
          ctx.addIssue({ code: 'custom', message: 'expected a JSON array such as [{"urls":"stun:stun.example.org:3478"}]' });
          return z.NEVER;
        }
        const r = z.array(iceServerSchema).safeParse(parsed);
        if (!r.success) {
          const i = r.error.issues[0]!;
          const where = i.path.length ? `entry ${String(i.path[0])}${i.path.length > 1 ? `.${i.path.slice(1).join('.')}` : ''}: ` : '';
          ctx.addIssue({ code: 'custom', message: `${where}${i.message}` });
          return z.NEVER;
        }
        for (const s of r.data) {
          const urls = [s.urls].flat();
          if (urls.some((u) => u.startsWith('turn')) && (s.username === undefined || s.credential === undefined)) {
            ctx.addIssue({ code: 'custom', message: `TURN server ${urls[0]} needs "username" and "credential"` });
            return z.NEVER;
          }
        }
        return r.data as IceServer[];
      }),
    WEBRTC_PORT_MIN: port.optional(),
    WEBRTC_PORT_MAX: port.optional(),
    WEBRTC_ANNOUNCED_IP: z
      .string()
      .optional()
      .refine((v) => v === undefined || isIP(v) !== 0, 'expected an IPv4 or IPv6 address'),
  })
  .superRefine((e, ctx) => {
    const min = e.WEBRTC_PORT_MIN;
    const max = e.WEBRTC_PORT_MAX;
    if ((min === undefined) !== (max === undefined)) {
      ctx.addIssue({ code: 'custom', path: [min === undefined ? 'WEBRTC_PORT_MIN' : 'WEBRTC_PORT_MAX'], message: 'set both WEBRTC_PORT_MIN and WEBRTC_PORT_MAX, or neither' });
    } else if (min !== undefined && max !== undefined && min >= max) {
      ctx.addIssue({ code: 'custom', path: ['WEBRTC_PORT_MAX'], message: `must be greater than WEBRTC_PORT_MIN (${min})` });
    }
  });

/**
 * Validates the WEBRTC_* variables (empty = unset). Throws a WebRtcConfigError (`problems`: one line
 * per bad variable with its value and what to fix, in loadConfig's format) — loadConfig can append
 * them to its own ConfigError problems.
 */
export function webrtcConfigFromEnv(env: Record<string, string | undefined> = process.env): WebRtcConfig {
  const cleaned: Record<string, string | undefined> = Object.fromEntries(WEBRTC_ENV_NAMES.map((k) => [k, emptyToUndefined(env[k])]));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) {
    throw new WebRtcConfigError(r.error.issues.map((i) => `${String(i.path[0])}=${JSON.stringify(cleaned[String(i.path[0])])}: ${i.message}`));
  }
  const e = r.data;
  return {
    iceServers: e.WEBRTC_ICE_SERVERS,
    portRange: e.WEBRTC_PORT_MIN !== undefined && e.WEBRTC_PORT_MAX !== undefined ? [e.WEBRTC_PORT_MIN, e.WEBRTC_PORT_MAX] : undefined,
    announcedIp: e.WEBRTC_ANNOUNCED_IP,
  };
}

function emptyToUndefined(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}
