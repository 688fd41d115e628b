/**
 * Lua scripts of the Redis broker. Each runs atomically in Redis, so a message is never out of both
 * its queue list and kombu's `unacked` hash (kombu itself has that window between BRPOP and ZADD).
 * Kept as strings so that they ship inside dist/ with the compiled code; the layout constants
 * come from ../protocol/kombu-redis.ts.
 *
 * An `unacked` entry is kombu's JSON array `[envelope, exchange, routing_key]` (spec §3.5).
 */
import { LUA_SEP, PRIORITY_STEPS } from '../protocol/kombu-redis.js';

/** kombu's list for a queue and priority (spec §3.2), as listFor() in kombu-redis.ts. */
const LUA_LIST_FOR = `
local SEP = '${LUA_SEP}'
local function list_for(queue, priority)
  local p = tonumber(priority) or 0
  if p < 0 then p = 0 elseif p > 9 then p = 9 end
  local step = 0
  for _, s in ipairs({${PRIORITY_STEPS.join(', ')}}) do if s <= p then step = s end end
  if step == 0 then return queue end
  return queue .. SEP .. step
end
`;

/**
 * Pops up to ARGV[1] messages from KEYS[4..] (lists in consumption order) and records each in
 * `unacked` (KEYS[1]) and `unacked_index` (KEYS[2], score ARGV[2] = now in epoch seconds, an integer).
 * ARGV[3] is a pop id: the tags taken are remembered under KEYS[3] so that the same call resent
 * after a reconnect (its reply lost) returns the same messages instead of taking more (a call
 * that took nothing leaves no record).
 * Before it pops, it acks what the worker acked since its last call (one command, where a MULTI
 * would cost four): ARGV[4] = A, the number of tags to ack, then the A tags. Then come the queue
 * names of KEYS[4..] (routing key for envelopes without delivery_info). Acking again (a resent
 * call) changes nothing.
 * Returns a flat array {list index (1-based), delivery tag, message text as it was in the list, ...}.
 *
 * An envelope whose properties end as celeriac or kombu write them (`"delivery_info": {"exchange": …,
 * "routing_key": …}`, kombu's `"priority": N`, `"body_encoding": "base64", "delivery_tag": …}}` at
 * the end of the text, in either spacing, no escapes in the three values) is read by pattern,
 * without decoding the whole envelope (cjson.decode was most of the script's cost per message):
 * the text's only "delivery_info" and only "delivery_tag" are those of that tail, so they are the
 * properties' own. Any other text is decoded by cjson as before. The two names are looked for by
 * their tails (`y_info"`, `y_tag"`: `"` is the commonest byte of an envelope, and string.find
 * stops at each one to compare): the first `"delivery_info"` is the tail's when the first `y_info"`
 * is its own, and no `"delivery_tag"` comes before it when no `y_tag"` does (a `y_tag"` that is not
 * one only sends the message to cjson).
 * The score ARGV[2] is an integer (see the caller): Redis keeps it as an integer in a small sorted
 * set, where a fractional one costs a printf per member added and a strtod per member passed.
 */
export const POP_SCRIPT = `
local FAST = {
  '^"delivery_info":{"exchange":"([^"\\\\]*)","routing_key":"([^"\\\\]*)"},"body_encoding":"base64","delivery_tag":"([^"\\\\]*)"}}$',
  '^"delivery_info": {"exchange": "([^"\\\\]*)", "routing_key": "([^"\\\\]*)"}, "priority": %d+, "body_encoding": "base64", "delivery_tag": "([^"\\\\]*)"}}$',
}
-- tag, exchange, routing key of an envelope in one of the FAST layouts, else nil.
local function fast(env)
  if string.byte(env, 1) ~= 123 then return nil end
  -- The first '"delivery_info"' is at di if it is the first 'y_info"' (8 bytes further).
  local di = string.find(env, 'y_info"', 1, true)
  if not di then return nil end
  di = di - 8
  for _, pat in ipairs(FAST) do
    local ex, rk, tag = string.match(env, pat, di)
    if ex then
      if string.find(env, 'y_tag"', 1, true) - 8 < di then return nil end
      return tag, ex, rk
    end
  end
  return nil
end
local nack = tonumber(ARGV[4])
local a = 5
-- In chunks: unpack() has a limit on how many values it returns.
for i = a, a + nack - 1, 1000 do
  local j = math.min(i + 999, a + nack - 1)
  redis.call('ZREM', KEYS[2], unpack(ARGV, i, j))
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, j))
end
a = a + nack
local rec = redis.call('GET', KEYS[3])
if rec then
  local nl = string.find(rec, '\\n', 1, true)
  if nl and string.sub(rec, 1, nl - 1) == ARGV[3] then
    local out = {}
    for idx, tag in string.gmatch(string.sub(rec, nl + 1), '(%d+) ([^\\n]+)') do
      local v = redis.call('HGET', KEYS[1], tag)
      if v then
        -- The message text inside the entry [text-or-envelope, exchange, routing_key].
        local ok, entry = pcall(cjson.decode, v)
        local text = ok and type(entry) == 'table' and type(entry[1]) == 'string' and entry[1]
        if not text then text = string.match(v, '^%[(.*),%s*"[^"]*",%s*"[^"]*"%s*%]$') or v end
        out[#out + 1] = tonumber(idx); out[#out + 1] = tag; out[#out + 1] = text
      end
    end
    return out
  end
end
local want = tonumber(ARGV[1])
-- want as text for RPOP: a Lua number passed to redis.call is formatted by a printf each time.
local wantText = ARGV[1]
local now = ARGV[2]
local out, lines, hargs, zargs = {}, {ARGV[3]}, {}, {}
local n = 0
for k = 4, #KEYS do
  if want <= 0 then break end
  local got = redis.call('RPOP', KEYS[k], wantText)
  if got then
    local idx = k - 3
    local queue = ARGV[a + idx - 1]
    local line = idx .. ' ' -- formatted once: a number turned into text is a sprintf
    for _, env in ipairs(got) do
      n = n + 1
      local tag, ex, rk = fast(env)
      local ok, m, entry, object
      if tag then
        ok = true
        object = true
        -- Exchange and routing key as written in the text (JSON string contents without escapes).
        entry = '[' .. env .. ', "' .. ex .. '", "' .. rk .. '"]'
      else
        ok, m = pcall(cjson.decode, env)
        object = ok and type(m) == 'table'
      end
      if tag then
        -- read by fast()
      elseif object and type(m.properties) == 'table' then
        local p = m.properties
        if type(p.delivery_tag) == 'string' then tag = p.delivery_tag end
        if type(p.delivery_info) == 'table' then ex = p.delivery_info.exchange; rk = p.delivery_info.routing_key end
      elseif not ok and string.match(env, '^%s*{') then
        -- An object cjson cannot read (a lone surrogate escape, which Python's json writes for
        -- os.fsdecode names): the worker parses it in JavaScript, as a message popped alone. It is
        -- recorded like any envelope, its tag read by pattern; it goes back to the queue it came from.
        object = true
        tag = string.match(env, '"delivery_tag"%s*:%s*"([^"]*)"')
      end
      if type(ex) ~= 'string' then ex = '' end
      if type(rk) ~= 'string' then rk = queue end
      if entry then
        -- read by fast()
      elseif object then
        entry = '[' .. env .. ', ' .. cjson.encode(ex) .. ', ' .. cjson.encode(rk) .. ']'
      else
        -- Not an envelope: keep it as a JSON string so the worker can dead-letter it.
        entry = '[' .. cjson.encode(env) .. ', ' .. cjson.encode(ex) .. ', ' .. cjson.encode(rk) .. ']'
      end
      if not tag then tag = ARGV[3] .. '.' .. n end
      hargs[#hargs + 1] = tag; hargs[#hargs + 1] = entry
      zargs[#zargs + 1] = now; zargs[#zargs + 1] = tag
      lines[#lines + 1] = line .. tag
      out[#out + 1] = idx; out[#out + 1] = tag; out[#out + 1] = env
    end
    want = want - #got
    wantText = tostring(want)
  end
end
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(hargs))
  redis.call('ZADD', KEYS[2], unpack(zargs))
  redis.call('SET', KEYS[3], table.concat(lines, '\\n'), 'PX', '60000')
elseif rec then
  -- Took nothing: the same call resent finds no record and takes what is there then, as it would
  -- have. No write at all when there was none (an idle consumer's pop behind each BRPOP wake).
  redis.call('DEL', KEYS[3])
end
return out
`;

/**
 * Puts unacked messages back into their queues (kombu's restore_by_tag / restore_visible) and
 * marks them redelivered. KEYS: unacked, unacked_index, unacked_mutex.
 * ARGV[1] = 'stale' (entries older than ARGV[3] epoch seconds, at most ARGV[4]) or 'tags'
 * (ARGV[5..]); ARGV[2] = '1' to LPUSH (consumed last: reject with requeue) or '0' to RPUSH
 * (consumed next: restores). Skips 'stale' while a Python worker holds unacked_mutex.
 * Returns the number of messages restored.
 */
export const RESTORE_SCRIPT =
  LUA_LIST_FOR +
  `
local tags
if ARGV[1] == 'stale' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
  tags = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
else
  tags = {}
  for i = 5, #ARGV do tags[#tags + 1] = ARGV[i] end
end
local restored = 0
for _, tag in ipairs(tags) do
  local v = redis.call('HGET', KEYS[1], tag)
  redis.call('ZREM', KEYS[2], tag)
  if v then
    redis.call('HDEL', KEYS[1], tag)
    local ok, entry = pcall(cjson.decode, v)
    -- Push the envelope text as stored (re-encoding with cjson would turn [] into {}); the pattern
    -- needs no cjson, which cannot read some valid JSON (lone surrogate escapes).
    local env, ex, rk = string.match(v, '^%[(.*),%s*"([^"]*)",%s*"([^"]*)"%s*%]$')
    local prio = 0
    if ok and type(entry) == 'table' and type(entry[1]) == 'string' then
      -- Recorded as a JSON string (not an envelope): the text exactly as it was taken.
      env = entry[1]; ex = entry[2] or ''; rk = entry[3] or ''
    elseif ok and type(entry) == 'table' then
      if not env then env = cjson.encode(entry[1]); ex = entry[2] or ''; rk = entry[3] or '' end
      if type(entry[1]) == 'table' and type(entry[1].properties) == 'table' then prio = entry[1].properties.priority end
    elseif env then
      prio = tonumber(string.match(env, '"priority"%s*:%s*(%d+)')) or 0
    end
    if env then
      env = string.gsub(env, '"delivery_info"%s*:%s*{', '"delivery_info": {"redelivered": true, ', 1)
      local queues = {}
      if ex == '' then
        queues[1] = rk
      else
        for _, member in ipairs(redis.call('SMEMBERS', '_kombu.binding.' .. ex)) do
          local brk, _, bq = string.match(member, '^(.-)' .. SEP .. '(.-)' .. SEP .. '(.*)$')
          if brk == rk then queues[#queues + 1] = bq end
        end
        if #queues == 0 then queues[1] = rk end
      end
      for _, q in ipairs(queues) do
        if ARGV[2] == '1' then redis.call('LPUSH', list_for(q, prio), env)
        else redis.call('RPUSH', list_for(q, prio), env) end
      end
      restored = restored + 1
    end
  end
end
return restored
`;
