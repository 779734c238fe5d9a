import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, ConfigError, parsePeerList } from './config.js';

test('defaults need no configuration', () => {
  const cfg = loadConfig({ env: {} });
  assert.equal(cfg.aeTitle, 'OPENDRIM');
  assert.equal(cfg.httpPort, 8080);
  assert.equal(cfg.dicomPort, 11112);
  assert.equal(cfg.bind, '0.0.0.0');
  assert.equal(cfg.databaseUrl, undefined);
  assert.equal(cfg.dicom.acceptUnknownCallingAe, false);
  assert.ok(path.isAbsolute(cfg.dataDir));
});

test('environment overrides the file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  const file = path.join(dir, 'c.yaml');
  writeFileSync(file, 'aeTitle: FROMFILE\nhttpPort: 9000\npeers:\n  - { aeTitle: PACS, host: 127.0.0.1, port: 4242 }\n');
  const cfg = loadConfig({ file, env: { OPENDRIM_HTTP_PORT: '9100', DATABASE_URL: 'postgres://x/y' } });
  assert.equal(cfg.aeTitle, 'FROMFILE');
  assert.equal(cfg.httpPort, 9100);
  assert.equal(cfg.databaseUrl, 'postgres://x/y');
  // A peer is trusted from its own host only unless it says anyHost.
  assert.deepEqual(cfg.peers, [{ aeTitle: 'PACS', host: '127.0.0.1', port: 4242, anyHost: false }]);
});

test('a bad key is named in the error', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  const file = path.join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ dicom: { maxPduLength: 'big' }, unknownKey: 1 }));
  assert.throws(() => loadConfig({ file, env: {} }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /dicom\.maxPduLength/);
    assert.match(e.message, /unknownKey/);
    return true;
  });
  assert.throws(() => loadConfig({ env: { OPENDRIM_DICOM_PORT: 'abc' } }), /OPENDRIM_DICOM_PORT/);
  assert.throws(() => loadConfig({ env: { OPENDRIM_AE_TITLE: 'A_TITLE_FAR_TOO_LONG' } }), /aeTitle/);
});

test('unreadable or malformed files are reported, not thrown raw', () => {
  assert.throws(() => loadConfig({ file: '/nonexistent/x.yaml', env: {} }), /cannot read config file/);
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  const file = path.join(dir, 'bad.yaml');
  writeFileSync(file, 'a: [unclosed');
  assert.throws(() => loadConfig({ file, env: {} }), /not valid YAML/);
});

test('anonymous networks must be addresses or CIDR blocks', () => {
  assert.deepEqual(loadConfig({ env: { OPENDRIM_DICOMWEB_ANONYMOUS_FROM: '127.0.0.0/8, 10.1.2.3' } }).dicomweb.anonymousFrom, ['127.0.0.0/8', '10.1.2.3']);
  assert.throws(() => loadConfig({ env: { OPENDRIM_DICOMWEB_ANONYMOUS_FROM: 'everyone' } }), /anonymousFrom/);
});

test('compact peer list', () => {
  assert.deepEqual(parsePeerList('PACS@127.0.0.1:4242, MOD@10.0.0.2:104'), [
    { aeTitle: 'PACS', host: '127.0.0.1', port: 4242, anyHost: false },
    { aeTitle: 'MOD', host: '10.0.0.2', port: 104, anyHost: false },
  ]);
  assert.throws(() => parsePeerList('nonsense'), /AE@host:port/);
});

test('the exchange port needs mutual TLS material, existing trust list files and a known PACS', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-x-'));
  for (const f of ['cert.pem', 'key.pem', 'ca.pem', 'list.jws', 'authority.pem']) writeFileSync(path.join(dir, f), 'x');
  const exchange = { domain: 'drimbox.chu-a.fr', trustList: { file: path.join(dir, 'list.jws'), authority: path.join(dir, 'authority.pem') } };
  const tls = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem'), ca: path.join(dir, 'ca.pem') };
  assert.throws(() => loadConfig({ env: {}, overrides: { exchange } }), /exchange needs tls.cert, tls.key and tls.ca/);
  assert.throws(() => loadConfig({ env: {}, overrides: { tls, exchange: { ...exchange, trustList: { ...exchange.trustList, file: path.join(dir, 'nope.jws') } } } }), /exchange.trustList.file: file .*nope.jws does not exist/);
  assert.throws(() => loadConfig({ env: {}, overrides: { tls, exchange: { ...exchange, pacs: 'GHOST' } } }), /exchange.pacs: GHOST is not one of the configured peers/);
  assert.throws(() => loadConfig({ env: {}, overrides: { tls, exchange: { ...exchange, pacsRetrieve: 'C-PULL' } } }), /exchange.pacsRetrieve/);
  // Overrides from code come after the environment: set the keys one by one so the port from the environment stays.
  const cfg = loadConfig({ env: { OPENDRIM_EXCHANGE_PORT: '9443' }, overrides: { tls, 'exchange.domain': exchange.domain, 'exchange.trustList': exchange.trustList } });
  assert.equal(cfg.exchange!.port, 9443);
  assert.equal(cfg.exchange!.pacsRetrieve, 'C-GET');
  assert.equal(cfg.exchange!.cache.maxGigabytes, 100);
});
