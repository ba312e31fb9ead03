/*
 * ratelimit_script: the Redis Lua scripts behind global-scope rate limits.
 * docs/ratelimit.md explains them; this header is the text that runs.
 *
 * Both are loaded once per connection with SCRIPT LOAD and called with
 * EVALSHA; on a "NOSCRIPT" error reply (Redis restarted, SCRIPT FLUSH,
 * failover) load again and retry the call once. Both read the clock with the
 * server's TIME, so gateway instances with skewed clocks agree. They need
 * Redis >= 3.2 (effect replication; the default from 5.0 on).
 *
 * RL_GCRA_SCRIPT: atomic GCRA decisions for g >= 1 groups, same math as gcra.h.
 * Group i (1-based) takes two keys and four arguments:
 *   KEYS[2i-1] state key        moat:rl:<rule>:<key>   value "<tat_us>:<interval_us>"
 *   KEYS[2i]   override hash    moat:rl:override:<rule>
 *   ARGV[4i-3] default rate in events per second (decimal, > 0)
 *   ARGV[4i-2] burst (integer >= 1)
 *   ARGV[4i-1] n: requests of cost 1 decided together, in order (1 <= n <= 10^6);
 *              the first k that fit pass, the rest are rejected and consume nothing
 *   ARGV[4i]   override field (the tenant) or "" for none
 *   reply      5 integers per group, flat (group i at 5(i-1)), indexed by enum
 *              rl_gcra_reply; with one group exactly the v2 reply
 *   error      "ERR moat-rl: bad arguments" if any group's arguments are out of
 *              range (checked before anything is written)
 * Groups are decided in order against one TIME, each seeing what the earlier ones
 * wrote (two groups may share a state key: one IP, two tenants).
 * The override value is "<number>" (per second) or "<number>/s|m|h", e.g.
 * "100", "100/s", "6000/m"; it replaces the rate (not the burst). A missing
 * field means the default rate; an unparsable one is ignored (reply -1 in
 * RL_REPLY_OVERRIDE so the caller can log it).
 * Only an allowed request writes the TAT (SET ... PX reset_after), so
 * rejections consume nothing and idle keys vanish when their bucket is full.
 *
 * RL_HEARTBEAT_SCRIPT: register this instance and count the live ones.
 *   KEYS[1] moat:rl:instances (sorted set, score = last beat in ms, server time)
 *   ARGV[1] instance id (unique per process, e.g. "<host>:<pid>:<random>")
 *   ARGV[2] liveness in ms (e.g. 3000 with one beat a second)
 *   reply   integer N = instances that beat within the liveness window (>= 1)
 */
#ifndef MOAT_RATELIMIT_SCRIPT_H
#define MOAT_RATELIMIT_SCRIPT_H

enum rl_gcra_reply {
    RL_REPLY_ALLOWED = 0, /* k: how many of the n passed (the first k); with n 1, 1 or 0 */
    RL_REPLY_REMAINING,   /* requests of cost 1 that would still pass now, after the k */
    RL_REPLY_RETRY_MS,    /* 0 if all n passed; else ms until the next one would (rounded up) */
    RL_REPLY_RESET_MS,    /* ms until the bucket is full again (rounded up) */
    RL_REPLY_OVERRIDE,    /* 1 tenant override applied, 0 none, -1 override unparsable */
    RL_REPLY_LEN
};

#define RL_GCRA_SCRIPT                                                                             \
    "-- moat GCRA v3 (src/policy/ratelimit_script.h)\n"                                            \
    "if redis.replicate_commands then redis.replicate_commands() end\n"                            \
    "local MAX_IV = 1099511627776\n"                                                               \
    "local function rate_of(s)\n"                                                                  \
    "  local n = string.match(s, '^%s*(%d+%.?%d*)%s*$')\n"                                         \
    "  local div = 1\n"                                                                            \
    "  if not n then\n"                                                                            \
    "    local u\n"                                                                                \
    "    n, u = string.match(s, '^%s*(%d+%.?%d*)%s*/%s*([smh])%s*$')\n"                            \
    "    if not n then return nil end\n"                                                           \
    "    if u == 'm' then div = 60 elseif u == 'h' then div = 3600 end\n"                          \
    "  end\n"                                                                                      \
    "  local r = tonumber(n) / div\n"                                                              \
    "  if r > 0 then return r end\n"                                                               \
    "  return nil\n"                                                                               \
    "end\n"                                                                                        \
    "local function ceil_ms(us) return math.floor((us + 999) / 1000) end\n"                        \
    "local ng = #KEYS / 2\n"                                                                       \
    "if ng < 1 or #KEYS % 2 ~= 0 or #ARGV ~= 4 * ng then\n"                                        \
    "  return redis.error_reply('ERR moat-rl: bad arguments')\n"                                   \
    "end\n"                                                                                        \
    "for g = 0, ng - 1 do\n"                                                                       \
    "  local rate, burst = tonumber(ARGV[4*g+1]), tonumber(ARGV[4*g+2])\n"                         \
    "  local n = tonumber(ARGV[4*g+3])\n"                                                          \
    "  if not rate or not (rate > 0) or not burst or not (burst >= 1) or burst % 1 ~= 0\n"         \
    "     or not n or not (n >= 1) or n % 1 ~= 0 or n > 1000000 then\n"                            \
    "    return redis.error_reply('ERR moat-rl: bad arguments')\n"                                 \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"                                      \
    "local out = {}\n"                                                                             \
    "for g = 0, ng - 1 do\n"                                                                       \
    "  local skey, okey, field = KEYS[2*g+1], KEYS[2*g+2], ARGV[4*g+4]\n"                          \
    "  local rate, burst = tonumber(ARGV[4*g+1]), tonumber(ARGV[4*g+2])\n"                         \
    "  local n = tonumber(ARGV[4*g+3])\n"                                                          \
    "  local ovs = 0\n"                                                                            \
    "  if field ~= '' then\n"                                                                      \
    "    local v = redis.call('HGET', okey, field)\n"                                              \
    "    if v then\n"                                                                              \
    "      local r = rate_of(v)\n"                                                                 \
    "      if r then rate = r; ovs = 1 else ovs = -1 end\n"                                        \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  local iv = 1000000 / rate\n"                                                                \
    "  if iv >= MAX_IV then iv = MAX_IV else iv = math.floor(iv + 0.5) end\n"                      \
    "  if iv < 1 then iv = 1 end\n"                                                                \
    "  local tat, siv = now, iv\n"                                                                 \
    "  local st = redis.call('GET', skey)\n"                                                       \
    "  if st then\n"                                                                               \
    "    local a, b = string.match(st, '^(%d+):(%d+)$')\n"                                         \
    "    if a then a = tonumber(a); b = tonumber(b) end\n"                                         \
    "    if a and a > now then\n"                                                                  \
    "      tat, siv = a, b\n"                                                                      \
    "      if b > 0 and b ~= iv then tat = now + math.ceil((a - now) * iv / b) end\n"              \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  local window = burst * iv\n"                                                                \
    "  local k = math.max(0, math.min(n, math.floor((now + window - tat) / iv)))\n"                \
    "  local o = 5 * g\n"                                                                          \
    "  if k == 0 then\n"                                                                           \
    "    if siv ~= iv then\n"                                                                      \
    "      redis.call('SET', skey, string.format('%d:%d', tat, iv),\n"                             \
    "                 'PX', string.format('%d', ceil_ms(tat - now)))\n"                            \
    "    end\n"                                                                                    \
    "    local rem = 0\n"                                                                          \
    "    if tat - now <= window then rem = math.floor((window - (tat - now)) / iv) end\n"          \
    "    out[o+1], out[o+2], out[o+3], out[o+4], out[o+5] =\n"                                     \
    "      0, rem, ceil_ms(tat + iv - window - now), ceil_ms(tat - now), ovs\n"                    \
    "  else\n"                                                                                     \
    "    local new_tat = tat + k * iv\n"                                                           \
    "    local reset = new_tat - now\n"                                                            \
    "    redis.call('SET', skey, string.format('%d:%d', new_tat, iv),\n"                           \
    "               'PX', string.format('%d', ceil_ms(reset)))\n"                                  \
    "    local retry = 0\n"                                                                        \
    "    if k < n then retry = ceil_ms(new_tat + iv - window - now) end\n"                         \
    "    out[o+1], out[o+2], out[o+3], out[o+4], out[o+5] =\n"                                     \
    "      k, math.floor((window - reset) / iv), retry, ceil_ms(reset), ovs\n"                     \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "return out\n"

#define RL_HEARTBEAT_SCRIPT                                                                        \
    "-- moat instance heartbeat v1 (src/policy/ratelimit_script.h)\n"                              \
    "if redis.replicate_commands then redis.replicate_commands() end\n"                            \
    "local live = tonumber(ARGV[2])\n"                                                             \
    "if not ARGV[1] or ARGV[1] == '' or not live or not (live >= 1) then\n"                        \
    "  return redis.error_reply('ERR moat-rl: bad arguments')\n"                                   \
    "end\n"                                                                                        \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                      \
    "redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])\n"                             \
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%d', now - live))\n"          \
    "redis.call('PEXPIRE', KEYS[1], string.format('%d', live * 2))\n"                              \
    "return redis.call('ZCARD', KEYS[1])\n"

#endif
