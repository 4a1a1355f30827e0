/**
 * Upper bounds on TPM2B sizes and list counts. Decoders refuse anything larger
 * before allocating, so a hostile length field cannot make us allocate much.
 */
export const LIMITS = {
  digestBytes: 64, // TPM2B_DIGEST, TPM2B_NONCE, TPM2B_AUTH
  dataBytes: 66, // TPM2B_DATA: sizeof(TPMT_HA)
  nameBytes: 68, // TPM2B_NAME: sizeof(TPMU_NAME)
  eccParameterBytes: 128, // TPM2B_ECC_PARAMETER
  rsaKeyBytes: 512, // TPM2B_PUBLIC_KEY_RSA, TPM2B_PRIVATE_KEY_RSA (4096-bit)
  sensitiveDataBytes: 256, // TPM2B_SENSITIVE_DATA
  encryptedSecretBytes: 512, // TPM2B_ENCRYPTED_SECRET
  idObjectBytes: 512, // TPM2B_ID_OBJECT
  privateBytes: 4096, // TPM2B_PRIVATE
  publicBytes: 4096, // TPM2B_PUBLIC
  attestBytes: 4096, // TPM2B_ATTEST
  nvBufferBytes: 4096, // TPM2B_MAX_NV_BUFFER
  maxBufferBytes: 4096, // TPM2B_MAX_BUFFER
  creationDataBytes: 4096, // TPM2B_CREATION_DATA
  pcrSelectBytes: 32, // TPMS_PCR_SELECTION.sizeofSelect (256 PCRs)
  listCount: 1024, // TPML_* entries
  hashCount: 16, // TPML_PCR_SELECTION, TPML_DIGEST_VALUES
  digestCount: 8, // TPML_DIGEST
} as const;
