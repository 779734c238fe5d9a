/**
 * Hand-built data set bytes (explicit or implicit VR little endian), for encodings toolkits would normalise away:
 * sequences and items of undefined length, UN sequences (PS3.5 6.2.2), encapsulated pixel data.
 */
export const le16 = (n: number) => Buffer.from([n & 0xff, n >> 8]);
export const le32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
export const tagBytes = (tag: number) => Buffer.concat([le16(tag >>> 16), le16(tag & 0xffff)]);
/** A value padded to even length (space, or NUL for UIDs). */
export const even = (v: string, pad = ' ') => Buffer.from(v.length % 2 ? v + pad : v, 'latin1');
export const item = (body: Buffer, undefinedLength: boolean) =>
  undefinedLength ? Buffer.concat([tagBytes(0xfffee000), le32(0xffffffff), body, tagBytes(0xfffee00d), le32(0)]) : Buffer.concat([tagBytes(0xfffee000), le32(body.length), body]);
export const undefinedSq = (tag: number, vr: 'SQ' | 'UN', items: Buffer[]) => Buffer.concat([tagBytes(tag), Buffer.from(vr), le16(0), le32(0xffffffff), ...items, tagBytes(0xfffee0dd), le32(0)]);
export const implicitElement = (tag: number, value: Buffer) => Buffer.concat([tagBytes(tag), le32(value.length), value]);
