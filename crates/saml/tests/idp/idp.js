// A SAML 2.0 identity provider for jumpgate-saml's tests (crates/saml/tests/idp.rs starts it),
// built on samlify: its metadata, its parsing of the AuthnRequest (HTTP-Redirect binding,
// checked against the SAML schemas by xmllint), its signed responses (xml-crypto).
//
//   node idp.js [--no-schema] [--expired-cert] [--users USERS_JSON] SP_METADATA
//
// listens on 127.0.0.1 (a free port) and prints `listening PORT` when ready. The SP's
// metadata (a file, or an https:// URL such as Jumpgate's /v1/webapi/saml/metadata/NAME,
// trusted through NODE_EXTRA_CA_CERTS) is read at the first login, so a test can make it
// from the IdP's metadata first:
//   GET /metadata            the IdP's metadata (HTTP-Redirect and HTTP-POST SSO endpoints)
//   GET /sso?SAMLRequest=... the SP's AuthnRequest by redirect; answers the HTML form a browser
//                            would post to the SP's ACS (HTTP-POST binding), with RelayState.
//
// `&scenario=NAME` on /sso makes the response the tests need (default `ok`); `&nameid=` sets the
// user. The signing keys are made at start: one in the metadata, one that is not ("other-key").
//
// With `--users USERS_JSON`, the IdP is one a person uses (Jumpgate's process-level tests,
// crates/jumpgate/tests/sso_saml.rs): /sso shows a login form, and POST /login answers the
// form to the ACS for a user of the file, which maps a login to
//   {"nameid": "...", "attributes": {"groups": [...], ...}, "scenario": "ok"}
// and is read at every login, so a test changes a user's groups (or removes them) between
// logins. An unknown user is refused by the IdP. Any password is taken: Jumpgate's side is
// what is tested.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const forge = require('node-forge');
const samlify = require('samlify');
const xmllint = require('@authenio/samlify-node-xmllint');

const args = process.argv.slice(2);
const usersAt = args.indexOf('--users');
const usersFile = usersAt >= 0 ? args[usersAt + 1] : undefined;
const spMetadataFile = args.find((a, i) => !a.startsWith('--') && (usersAt < 0 || i !== usersAt + 1));
if (!spMetadataFile || (usersAt >= 0 && !usersFile)) {
    console.error('usage: node idp.js [--no-schema] [--expired-cert] [--users USERS_JSON] SP_METADATA');
    process.exit(2);
}
// samlify checks every message it reads against the SAML schemas (here, the SP's
// AuthnRequest) with xmllint compiled to JavaScript, whose first use takes seconds;
// `--no-schema` keeps only samlify's own parsing, for the tests that are not about the request.
samlify.setSchemaValidator(
    args.includes('--no-schema') ? { validate: async () => 'not checked against the schemas' } : xmllint,
);

// An RSA key and a self-signed certificate for it, as IdPs publish in their metadata.
// `expired`: its validity ended yesterday (IdPs' metadata certificates often have).
function signer(commonName, expired = false) {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    });
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
    cert.serialNumber = '01' + crypto.randomBytes(8).toString('hex');
    const day = 24 * 3600 * 1000;
    cert.validity.notBefore = new Date(Date.now() - (expired ? 400 * day : 3600 * 1000));
    cert.validity.notAfter = new Date(Date.now() + (expired ? -day : 365 * day));
    const name = [{ name: 'commonName', value: commonName }];
    cert.setSubject(name);
    cert.setIssuer(name);
    cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
    return { privateKey, cert: forge.pki.certificateToPem(cert) };
}

const escapeXml = (s) =>
    String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const iso = (ms) => new Date(ms).toISOString();

// The request handler of the IdP at `port`.
function start(port) {
    const base = `http://127.0.0.1:${port}`;
    const entityID = `${base}/metadata`;
    const sso = [
        { Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: `${base}/sso` },
        { Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST', Location: `${base}/sso-post` },
    ];
    const trusted = signer('jumpgate test idp', args.includes('--expired-cert'));
    const other = signer('not the idp');
    const idpWith = (key) =>
        samlify.IdentityProvider({
            entityID,
            privateKey: key.privateKey,
            signingCert: key.cert,
            singleSignOnService: sso,
            nameIDFormat: ['urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'],
            requestSignatureAlgorithm: key.algorithm || 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
        });
    const idp = idpWith(trusted);
    const otherIdp = idpWith(other);
    const sha1Idp = idpWith({ ...trusted, algorithm: 'http://www.w3.org/2000/09/xmldsig#rsa-sha1' });
    // The SP as its metadata describes it (WantAssertionsSigned="true": samlify signs the
    // assertion), and two variants for the other ways IdPs sign; made at the first login.
    let sp, spResponseSigned, spBothSigned, acs;
    async function loadSp() {
        if (sp) return;
        let spMetadata;
        if (/^https?:\/\//.test(spMetadataFile)) {
            const answer = await fetch(spMetadataFile);
            spMetadata = await answer.text();
            if (!answer.ok) throw new Error(`SP metadata at ${spMetadataFile}: HTTP ${answer.status}: ${spMetadata}`);
        } else {
            spMetadata = fs.readFileSync(spMetadataFile, 'utf8');
        }
        sp = samlify.ServiceProvider({ metadata: spMetadata });
        spResponseSigned = samlify.ServiceProvider({
            metadata: spMetadata.replace('WantAssertionsSigned="true"', 'WantAssertionsSigned="false"'),
        });
        spBothSigned = samlify.ServiceProvider({ metadata: spMetadata, wantMessageSigned: true });
        acs = sp.entityMeta.getAssertionConsumerService('post');
    }

    // The response's values; a scenario changes some. `requestId` is the AuthnRequest's ID.
    function values(requestId, nameId, scenario) {
        const now = Date.now();
        const v = {
            ID: '_' + crypto.randomBytes(16).toString('hex'),
            AssertionID: '_' + crypto.randomBytes(16).toString('hex'),
            Destination: acs,
            Audience: sp.entityMeta.getEntityID(),
            SubjectRecipient: acs,
            Issuer: entityID,
            IssueInstant: iso(now),
            StatusCode: 'urn:oasis:names:tc:SAML:2.0:status:Success',
            ConditionsNotBefore: iso(now - 1000),
            ConditionsNotOnOrAfter: iso(now + 5 * 60 * 1000),
            SubjectConfirmationDataNotOnOrAfter: iso(now + 5 * 60 * 1000),
            NameIDFormat: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
            NameID: nameId,
            InResponseTo: requestId,
            SessionNotOnOrAfter: iso(now + 8 * 3600 * 1000),
        };
        switch (scenario) {
            case 'wrong-audience': v.Audience = 'https://another-sp.example.com/saml'; break;
            case 'wrong-recipient': v.SubjectRecipient = 'https://another-sp.example.com/acs'; break;
            case 'wrong-destination': v.Destination = 'https://another-sp.example.com/acs'; break;
            case 'wrong-issuer': v.Issuer = 'https://another-idp.example.com/metadata'; break;
            case 'scd-expired': v.SubjectConfirmationDataNotOnOrAfter = iso(now - 10 * 60 * 1000); break;
            case 'unsolicited': v.InResponseTo = undefined; break;
            // The IdP's session ends in ten minutes: the SP's login must end with it.
            case 'short-session': v.SessionNotOnOrAfter = iso(now + 10 * 60 * 1000); break;
            case 'expired':
                // Issued 15 minutes ago for 5: over, even with the SP's clock skew.
                v.IssueInstant = iso(now - 15 * 60 * 1000);
                v.ConditionsNotBefore = iso(now - 15 * 60 * 1000);
                v.ConditionsNotOnOrAfter = iso(now - 10 * 60 * 1000);
                v.SubjectConfirmationDataNotOnOrAfter = iso(now - 10 * 60 * 1000);
                break;
        }
        return v;
    }

    // The Response XML from samlify's login-response template with our values, an
    // AuthnStatement and a multi-valued AttributeStatement.
    function render(template, v, attrs) {
        const authn =
            `<saml:AuthnStatement AuthnInstant="${v.IssueInstant}" SessionIndex="${v.AssertionID}" ` +
            `SessionNotOnOrAfter="${v.SessionNotOnOrAfter}"><saml:AuthnContext><saml:AuthnContextClassRef>` +
            'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport' +
            '</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>';
        const attribute = (name, vals) =>
            `<saml:Attribute Name="${escapeXml(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">` +
            vals.map((x) => `<saml:AttributeValue xsi:type="xs:string">${escapeXml(x)}</saml:AttributeValue>`).join('') +
            '</saml:Attribute>';
        const given = attrs || { email: [v.NameID], groups: ['devs', 'ops'] };
        const attributes =
            '<saml:AttributeStatement>' +
            Object.entries(given).map(([name, vals]) => attribute(name, [].concat(vals))).join('') +
            '</saml:AttributeStatement>';
        const withStatements = template
            .replace('{AuthnStatement}', authn)
            .replace('{AttributeStatement}', attributes);
        return samlify.SamlLib.replaceTagsByValue(withStatements, v);
    }

    async function response(requestId, nameId, scenario, attrs) {
        const v = values(requestId, nameId, scenario);
        const template = samlify.SamlLib.defaultLoginResponseTemplate.context;
        const unsignedXml = () => render(template, v, attrs);
        switch (scenario) {
            case 'unsigned':
                return Buffer.from(unsignedXml()).toString('base64');
            case 'failed-status': {
                // What IdPs send when the login failed: a status, no assertion, unsigned.
                const xml =
                    '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ' +
                    'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ' +
                    `ID="${v.ID}" Version="2.0" IssueInstant="${v.IssueInstant}" Destination="${escapeXml(v.Destination)}" ` +
                    `InResponseTo="${escapeXml(requestId)}"><saml:Issuer>${escapeXml(entityID)}</saml:Issuer>` +
                    '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder">' +
                    '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode>' +
                    '<samlp:StatusMessage>The user is not assigned to this application</samlp:StatusMessage>' +
                    '</samlp:Status></samlp:Response>';
                return Buffer.from(xml).toString('base64');
            }
        }
        const issuer = scenario === 'other-key' ? otherIdp : scenario === 'sha1' ? sha1Idp : idp;
        const target =
            scenario === 'response-signed' ? spResponseSigned : scenario === 'both-signed' ? spBothSigned : sp;
        const { context } = await issuer.createLoginResponse(
            target,
            { extract: { request: { id: requestId } } },
            'post',
            { email: nameId },
            { customTagReplacement: (t) => ({ id: v.ID, context: render(t, v, attrs) }) },
        );
        return context;
    }

    return async (req, res) => {
        const url = new URL(req.url, base);
        try {
            if (url.pathname === '/metadata') {
                res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' });
                res.end(idp.getMetadata());
                return;
            }
            if (usersFile && url.pathname === '/sso') {
                // A person's IdP: the login form first, with the request kept in it.
                await loadSp();
                res.writeHead(200, { 'content-type': 'text/html' });
                res.end(
                    '<html><head><title>Test IdP sign-in</title></head><body><h1>Test IdP</h1>' +
                    `<form method="post" action="/login"><input type="hidden" name="query" value="${escapeXml(url.search)}"/>` +
                    '<label>Username <input name="username" autocomplete="username"/></label>' +
                    '<label>Password <input name="password" type="password"/></label>' +
                    '<button type="submit">Sign in</button></form></body></html>',
                );
                return;
            }
            if (usersFile && url.pathname === '/login' && req.method === 'POST') {
                await loadSp();
                const chunks = [];
                for await (const chunk of req) chunks.push(chunk);
                const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
                const query = Object.fromEntries(new URLSearchParams(form.get('query') || ''));
                const users = JSON.parse(fs.readFileSync(usersFile, 'utf8'));
                const login = form.get('username') || '';
                const user = Object.hasOwn(users, login) ? users[login] : undefined;
                if (!user) {
                    console.error(`login: unknown user ${login}`);
                    res.writeHead(403, { 'content-type': 'text/html' });
                    res.end('<html><body><h1>Test IdP</h1><p>Unknown user or wrong password.</p></body></html>');
                    return;
                }
                const { extract } = await idp.parseLoginRequest(sp, 'redirect', { query });
                const requestId = extract.request.id;
                const scenario = user.scenario || 'ok';
                const samlResponse = await response(requestId, user.nameid, scenario, user.attributes || {});
                console.error(`login: request ${requestId} scenario ${scenario} user ${user.nameid}`);
                const relay = query.RelayState === undefined ? '' :
                    `<input type="hidden" name="RelayState" value="${escapeXml(query.RelayState)}"/>`;
                res.writeHead(200, { 'content-type': 'text/html' });
                res.end(
                    `<html><body onload="document.forms[0].submit()"><form method="post" action="${escapeXml(acs)}">` +
                    `<input type="hidden" name="SAMLResponse" value="${samlResponse}"/>${relay}</form></body></html>`,
                );
                return;
            }
            if (url.pathname === '/sso') {
                await loadSp();
                const query = Object.fromEntries(url.searchParams);
                const scenario = query.scenario || 'ok';
                const { extract } = await idp.parseLoginRequest(sp, 'redirect', { query });
                const requestId = extract.request.id;
                if (extract.issuer !== sp.entityMeta.getEntityID()) {
                    throw new Error(`AuthnRequest from ${extract.issuer}, not the SP of the metadata`);
                }
                const nameId = query.nameid || 'alice@example.com';
                const samlResponse = await response(requestId, nameId, scenario);
                console.error(`sso: request ${requestId} scenario ${scenario} user ${nameId}`);
                const relay = query.RelayState === undefined ? '' :
                    `<input type="hidden" name="RelayState" value="${escapeXml(query.RelayState)}"/>`;
                res.writeHead(200, { 'content-type': 'text/html' });
                res.end(
                    `<html><body onload="document.forms[0].submit()"><form method="post" action="${escapeXml(acs)}">` +
                    `<input type="hidden" name="SAMLResponse" value="${samlResponse}"/>${relay}</form></body></html>`,
                );
                return;
            }
            res.writeHead(404);
            res.end('not found');
        } catch (err) {
            console.error(`${url.pathname}: ${err && err.stack ? err.stack : err}`);
            res.writeHead(400, { 'content-type': 'text/plain' });
            res.end(`refused: ${err}`);
        }
    };
}

// The test holds our standard input open: when it ends (the test finished, or was killed),
// so do we, and no IdP outlives its test.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

// The entity ID and endpoints name the port, so the IdP is made once the port is known.
let handler = (_req, res) => { res.writeHead(503); res.end('starting'); };
const server = http.createServer((req, res) => handler(req, res));
server.listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    handler = start(port);
    console.log(`listening ${port}`);
});
