/**
 * A value computed once per key and kept, for the few keys that recur (parsed keys, prepared statements, tag
 * names): the map is emptied when it reaches `limit`, so unusual input can never make it grow without bound.
 */
export function remembered<K, V>(cache: Map<K, V>, key: K, limit: number, make: (key: K) => V): V {
  let value = cache.get(key);
  if (value === undefined && !cache.has(key)) {
    value = make(key);
    if (cache.size >= limit) cache.clear();
    cache.set(key, value);
  }
  return value as V;
}
