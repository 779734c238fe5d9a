/** INS (Identifiant National de Santé) checks shared by every function that receives one. */

export const INS_OID = {
  nir: '1.2.250.1.213.1.4.8',
  nia: '1.2.250.1.213.1.4.9',
  testNir: '1.2.250.1.213.1.4.10',
} as const;

export const INS_OIDS: string[] = Object.values(INS_OID);

/**
 * A NIR/NIA: 13 characters (Corsica: 2A/2B in positions 6-7) and a 2-digit control key, 97 - (number mod 97),
 * the Corsican letters counted as 19 (2A) and 18 (2B).
 */
export function validIns(value: string): boolean {
  const v = value.trim().toUpperCase();
  if (!/^[12378][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{8}$/.test(v)) return false;
  const body = v.slice(0, 13).replace('2A', '19').replace('2B', '18');
  const key = Number(v.slice(13));
  return 97 - Number(BigInt(body) % 97n) === key;
}
