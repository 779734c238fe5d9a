/** IHE ITI TF-3 identifiers for XDS.b metadata and transactions. */

export const NS = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  wsa: 'http://www.w3.org/2005/08/addressing',
  rim: 'urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0',
  lcm: 'urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0',
  query: 'urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0',
  rs: 'urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0',
  xds: 'urn:ihe:iti:xds-b:2007',
  xop: 'http://www.w3.org/2004/08/xop/include',
} as const;

export const Action = {
  provideAndRegister: 'urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b',
  registryStoredQuery: 'urn:ihe:iti:2007:RegistryStoredQuery',
  retrieveDocumentSet: 'urn:ihe:iti:2007:RetrieveDocumentSet',
  updateDocumentSet: 'urn:ihe:iti:2010:UpdateDocumentSet',
} as const;

export const ObjectType = {
  documentEntryStable: 'urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1',
  submissionSet: 'urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd',
  classification: 'urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification',
  externalIdentifier: 'urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier',
  association: 'urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association',
  registryPackage: 'urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage',
} as const;

export const Scheme = {
  classCode: 'urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a',
  confidentialityCode: 'urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f',
  eventCode: 'urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4',
  formatCode: 'urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d',
  healthcareFacilityTypeCode: 'urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1',
  practiceSettingCode: 'urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead',
  typeCode: 'urn:uuid:f0306f51-975f-434e-a61c-c59651d33983',
  documentAuthor: 'urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d',
  documentPatientId: 'urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427',
  documentUniqueId: 'urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab',
  submissionAuthor: 'urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d',
  contentTypeCode: 'urn:uuid:aa543740-bdda-424e-8c96-df4873be8500',
  submissionPatientId: 'urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446',
  submissionSourceId: 'urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832',
  submissionUniqueId: 'urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8',
} as const;

export const AssociationType = {
  hasMember: 'urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember',
  replace: 'urn:ihe:iti:2007:AssociationType:RPLC',
  updateAvailabilityStatus: 'urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus',
} as const;

export const Status = {
  approved: 'urn:oasis:names:tc:ebxml-regrep:StatusType:Approved',
  deprecated: 'urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated',
  submitted: 'urn:oasis:names:tc:ebxml-regrep:StatusType:Submitted',
} as const;

export const ResponseStatus = {
  success: 'urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success',
  failure: 'urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure',
  partialSuccess: 'urn:ihe:iti:2007:ResponseStatusType:PartialSuccess',
} as const;

export const StoredQuery = {
  findDocuments: 'urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d',
  getDocuments: 'urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4',
  getSubmissionSetAndContents: 'urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83',
} as const;

/** XDS error codes (ITI TF-3 Table 4.2.4.1-2) used here. */
export type XdsErrorCode =
  | 'XDSUnknownPatientId'
  | 'XDSPatientIdDoesNotMatch'
  | 'XDSRegistryMetadataError'
  | 'XDSRepositoryMetadataError'
  | 'XDSDuplicateUniqueIdInRegistry'
  | 'XDSNonIdenticalHash'
  | 'XDSNonIdenticalSize'
  | 'XDSMissingDocument'
  | 'XDSMissingDocumentMetadata'
  | 'XDSDocumentUniqueIdError'
  | 'XDSUnknownRepositoryId'
  | 'XDSRegistryError'
  | 'XDSRepositoryError'
  | 'XDSStoredQueryParamNumber'
  | 'XDSStoredQueryMissingParam'
  | 'XDSUnknownStoredQuery'
  | 'XDSMetadataUpdateError'
  | 'XDSMetadataVersionError'
  | 'XDSUnreferencedObjectURN';

/** French national code systems used in DMP metadata (CI-SIS). */
export const FrOid = {
  insNir: '1.2.250.1.213.1.4.8',
  insNia: '1.2.250.1.213.1.4.9',
  insNirTest: '1.2.250.1.213.1.4.10',
  rpps: '1.2.250.1.71.4.2.1',
  finess: '1.2.250.1.71.4.2.2',
  classCodes: '1.2.250.1.213.1.1.4.1',
  typeCodesImg: '1.2.250.1.213.1.1.4.12',
  loinc: '2.16.840.1.113883.6.1',
  dicomUid: '1.2.840.10008.2.6.1',
  dicomDcm: '1.2.840.10008.2.16.4',
  confidentiality: '2.16.840.1.113883.5.25',
  dmpConfidentiality: '1.2.250.1.213.1.1.4.13',
  ihePdfFormat: '1.3.6.1.4.1.19376.1.2.3',
} as const;

export const INS_OIDS: readonly string[] = [FrOid.insNir, FrOid.insNia, FrOid.insNirTest];
