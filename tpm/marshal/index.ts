export { TpmDecodeError, TpmUnionTagError, type TpmDecodeErrorCode } from "./decode-error.js";
export { TpmReader, decodeExact } from "./reader.js";
export { TpmWriter, encode } from "./writer.js";
