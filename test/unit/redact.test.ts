/**
 * The pure secret rules of src/domain/secrets.ts and the digest of
 * src/domain/config-hash.ts: what is redacted and how, which names are reserved, and
 * what the container config hash does (and does not) reveal.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { containerConfigHash, secretValuesDigest } from '../../src/domain/config-hash.js';
import {
  isReservedSecretName,
  MIN_REDACTED_LENGTH,
  MIN_REDACTED_PARTIAL_LENGTH,
  redactSecrets,
  secretRedactor,
} from '../../src/domain/secrets.js';
import { makeSpec } from '../support/fixtures.js';

describe('redactSecrets', () => {
  test('every occurrence, back to back and overlapping itself', () => {
    assert.equal(redactSecrets('a=s3cret b=s3crets3cret', { PW: 's3cret' }), 'a=[redacted:PW] b=[redacted:PW][redacted:PW]');
    // "aaaa" occurs at 0 and 1 of "aaaaa": one marker covers both, nothing is left over.
    assert.equal(redactSecrets('xaaaaay', { K: 'aaaa' }), 'x[redacted:K]y');
  });

  test('a value inside a longer one: the longer is redacted whole, under its own name', () => {
    const secrets = { DB_PASSWORD: 'hunter22', DATABASE_URL: 'postgres://u:hunter22@db/app' };
    assert.equal(
      redactSecrets('url=postgres://u:hunter22@db/app pw=hunter22', secrets),
      'url=[redacted:DATABASE_URL] pw=[redacted:DB_PASSWORD]',
    );
  });

  test('values that partly overlap in the text become one marker naming both: no part of either remains', () => {
    assert.equal(redactSecrets('>abcdefghij<', { A: 'abcdefg', B: 'efghij' }), '>[redacted:A,B]<');
  });

  test(`values shorter than ${MIN_REDACTED_LENGTH} characters, empty and unset ones are left alone`, () => {
    assert.equal(MIN_REDACTED_LENGTH, 4);
    const text = 'on ab x abc, abcd';
    assert.equal(redactSecrets(text, { EMPTY: '', ONE: 'x', TWO: 'ab', THREE: 'abc', UNSET: undefined }), text);
    assert.equal(redactSecrets(text, { FOUR: 'abcd' }), 'on ab x abc, [redacted:FOUR]');
  });

  test('one value under two names names both; a value that looks like a marker is not searched for inside markers', () => {
    assert.equal(redactSecrets('k=samevalue', { B: 'samevalue', A: 'samevalue' }), 'k=[redacted:A,B]');
    assert.equal(redactSecrets('redacted', { R: 'redacted', P: 'password9' }), '[redacted:R]');
    assert.equal(redactSecrets('password9 redacted', { R: 'redacted', P: 'password9' }), '[redacted:P] [redacted:R]');
  });

  test('regular-expression characters and multi-line values are matched literally', () => {
    assert.equal(redactSecrets('x a.b*c(d) x', { S: 'a.b*c(d)' }), 'x [redacted:S] x');
    assert.equal(redactSecrets('axbxcxd', { S: 'a.b*c(d)' }), 'axbxcxd');
    const pem = '-----BEGIN KEY-----\nMIIB\n-----END KEY-----';
    assert.equal(redactSecrets(`key:\n${pem}\ndone`, { KEY: pem }), 'key:\n[redacted:KEY]\ndone');
  });

  test('a multi-line value is also redacted line by line (a container log is redacted one line at a time)', () => {
    const pem = '-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\r\nab\n-----END KEY-----';
    const redact = secretRedactor({ KEY: pem });
    assert.equal(redact('MIIBOgIBAAJBAKj34GkxFhD9'), '[redacted:KEY]');
    assert.equal(redact('printed: -----END KEY-----'), 'printed: [redacted:KEY]');
    // A line shorter than MIN_REDACTED_LENGTH is not looked for on its own.
    assert.equal(redact('ab'), 'ab');
  });

  test('a tail that starts inside a value: its leading end of the value is redacted (tail option only)', () => {
    const secrets = { TOKEN: 'tok-0123456789abcdef' };
    const tail = '23456789abcdef\nnext line';
    assert.equal(redactSecrets(tail, secrets, { tail: true }), '[redacted:TOKEN]\nnext line');
    assert.equal(redactSecrets(tail, secrets), tail, 'not for text that is not a tail');
    // Leftovers shorter than MIN_REDACTED_PARTIAL_LENGTH stay (ordinary text often ends a value).
    const short = 'abcdef'.slice(-(MIN_REDACTED_PARTIAL_LENGTH - 1)) + ' rest';
    assert.equal(redactSecrets(short, secrets, { tail: true }), short);
  });

  test('the redactor of no secrets (or only short ones) returns text unchanged', () => {
    assert.equal(secretRedactor({})('anything'), 'anything');
    assert.equal(secretRedactor({ A: 'ab' })('ab ab'), 'ab ab');
  });
});

describe('reserved secret names', () => {
  test('BERTH_ in any case is reserved; names that merely contain it are not', () => {
    for (const n of ['BERTH_TOKEN', 'BERTH_DB', 'berth_token', 'Berth_X', 'BERTH_']) assert.equal(isReservedSecretName(n), true, n);
    for (const n of ['DB_PASSWORD', 'MY_BERTH_TOKEN', 'BERTHA', 'BERTH']) assert.equal(isReservedSecretName(n), false, n);
  });
});

describe('containerConfigHash and the secret values digest', () => {
  test('an app without secrets hashes as before secrets counted (no container is replaced on upgrade)', () => {
    // Values computed with the hash before this change.
    assert.equal(containerConfigHash(makeSpec(), {}), 'ef5bf909bfc91e22');
    assert.equal(containerConfigHash(makeSpec({ env: { A: '1' }, hosts: ['h1'] }), { A: 'ignored' }), 'f5ddff9afa74a73c');
  });

  test('values change the hash; names of the environment outside secrets do not', () => {
    const spec = makeSpec({ secrets: ['DB_PASSWORD'] });
    const a = containerConfigHash(spec, { DB_PASSWORD: 'one-value', OTHER: 'x' });
    assert.equal(containerConfigHash(spec, { DB_PASSWORD: 'one-value', OTHER: 'y' }), a);
    assert.notEqual(containerConfigHash(spec, { DB_PASSWORD: 'two-value' }), a);
    assert.notEqual(containerConfigHash(spec, {}), a, 'unset is not the same as set');
  });

  test('the digest is salted per app and domain-separated: not the plain sha256 of the value', async () => {
    const { createHash } = await import('node:crypto');
    const d = secretValuesDigest('web', ['PW'], { PW: 'password' });
    assert.match(d, /^[0-9a-f]{32}$/);
    assert.notEqual(d, secretValuesDigest('api', ['PW'], { PW: 'password' }), 'another app, another digest');
    assert.ok(!createHash('sha256').update('password').digest('hex').startsWith(d));
    // A reserved name's value never counts (it never reaches a container).
    assert.equal(secretValuesDigest('web', ['BERTH_TOKEN'], { BERTH_TOKEN: 't1' }), secretValuesDigest('web', ['BERTH_TOKEN'], {}));
    // Name/value boundaries are unambiguous.
    assert.notEqual(secretValuesDigest('web', ['A', 'B'], { A: 'x', B: 'y,z' }), secretValuesDigest('web', ['A', 'B'], { A: 'x,y', B: 'z' }));
  });
});
