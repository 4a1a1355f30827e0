/**
 * The one way src/ loads @peculiar/x509: after the Reflect metadata polyfill it
 * needs, and with node's WebCrypto as its provider. Import x509 from here.
 */
// tsyringe, a dependency of @peculiar/x509, needs the Reflect metadata API at load time.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509, webcrypto };
