import { existsSync, readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** A DICOM application entity this node knows: a C-MOVE destination and/or a query/retrieve source. */
const PeerSchema = z
  .object({
    aeTitle: z.string().min(1).max(16).regex(/^[^\\]*$/, 'AE title must not contain a backslash'),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    /** Base URL of the peer's DICOMweb service (…/dicom-web), when it has one. */
    dicomweb: z.string().url().optional(),
    /** Connect to this peer's DICOM port with TLS (PS3.15 B.1), presenting our certificate. */
    tls: z.boolean().optional(),
    description: z.string().optional(),
    /**
     * Where its associations may come from besides `host` (addresses or CIDR networks). An AE title alone proves
     * nothing: a calling AE from another address is refused.
     */
    from: z.array(z.string().min(1)).optional(),
    /** Accept this AE title from any address (modalities on DHCP); off by default. */
    anyHost: z.boolean().default(false),
  })
  .strict();

export const ConfigSchema = z
  .object({
    aeTitle: z.string().min(1).max(16).default('OPENDRIM'),
    bind: z.string().min(1).default('0.0.0.0'),
    httpPort: z.number().int().min(0).max(65535).default(8080),
    dicomPort: z.number().int().min(0).max(65535).default(11112),
    /** DICOM over TLS (PS3.15 B.1), served when `tls` is configured; 2762 is the IANA dicom-tls port. */
    dicomTlsPort: z.number().int().min(0).max(65535).default(2762),
    /**
     * TLS for HTTPS and DICOM TLS: PEM files. With `requireClientCert`, clients must present a certificate
     * signed by `ca` (mutual TLS, as between DRIMboxes).
     */
    tls: z
      .object({
        cert: z.string().min(1),
        key: z.string().min(1),
        ca: z.string().min(1).optional(),
        requireClientCert: z.boolean().default(false),
      })
      .strict()
      .optional(),
    dataDir: z.string().min(1).default('./data'),
    /** `postgres://…` switches the index to PostgreSQL; otherwise SQLite under dataDir. */
    databaseUrl: z.string().optional(),
    /** Public base URL of this node, used in Retrieve URLs and BulkDataURIs; derived from the request when absent. */
    publicUrl: z.string().url().optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    storage: z
      .object({
        /** What to do when an instance with a known SOP Instance UID arrives again. */
        duplicates: z.enum(['keep', 'overwrite']).default('keep'),
        /** Largest single instance accepted (bytes), over DIMSE and STOW-RS. */
        maxInstanceBytes: z.number().int().positive().default(4 * 1024 ** 3),
        /**
         * Sync each instance to stable storage before acknowledging it (C-STORE response, STOW-RS answer).
         * Turning it off is faster on slow disks but a power cut can lose instances the sender thinks stored.
         */
        fsync: z.boolean().default(true),
        /** Below this much free space on the storage file system, receiving is refused (associations, STOW-RS) and /health is degraded. */
        minFreeMegabytes: z.number().nonnegative().default(1024),
      })
      .strict()
      .default({ duplicates: 'keep', maxInstanceBytes: 4 * 1024 ** 3, fsync: true, minFreeMegabytes: 1024 }),
    dicom: z
      .object({
        /** Accept associations from calling AE titles that are not in `peers`. */
        acceptUnknownCallingAe: z.boolean().default(false),
        /** Check that the called AE title is ours. */
        checkCalledAe: z.boolean().default(true),
        maxPduLength: z.number().int().min(4096).max(16 * 1024 * 1024).default(262144),
        maxAssociations: z.number().int().positive().default(64),
        /** Associations one calling AE may hold at once, so that one client cannot take every slot. */
        maxAssociationsPerAe: z.number().int().positive().default(16),
        /** Idle time (ms) after which an association is aborted. */
        idleTimeoutMs: z.number().int().positive().default(60_000),
        /** Upper bound on C-FIND matches returned. */
        maxFindResults: z.number().int().positive().default(10_000),
      })
      .strict()
      .default({
        acceptUnknownCallingAe: false,
        checkCalledAe: true,
        maxPduLength: 262144,
        maxAssociations: 64,
        maxAssociationsPerAe: 16,
        idleTimeoutMs: 60_000,
        maxFindResults: 10_000,
      }),
    dicomweb: z
      .object({
        maxQidoResults: z.number().int().positive().default(1000),
        maxStowBytes: z.number().int().positive().default(8 * 1024 ** 3),
        /**
         * Networks (CIDR) allowed to use DICOMweb without authentication. Until user authentication lands, the
         * default keeps patient data on the machine itself; widen it only behind a reverse proxy that authenticates.
         */
        anonymousFrom: z.array(z.string()).default(['127.0.0.0/8', '::1/128']),
      })
      .strict()
      .default({ maxQidoResults: 1000, maxStowBytes: 8 * 1024 ** 3, anonymousFrom: ['127.0.0.0/8', '::1/128'] }),
    peers: z.array(PeerSchema).default([]),
    /** HL7 v2 over MLLP listener (reports from the RIS, orders, ADT). */
    hl7: z
      .object({
        port: z.number().int().min(0).max(65535).default(2575),
        enabled: z.boolean().default(true),
        /** Largest message accepted (an ORU with a base64 PDF report is a few MB). */
        maxMessageBytes: z.number().int().positive().default(32 * 1024 * 1024),
        /** Application/facility written in our ACKs (MSH-3/4). */
        application: z.string().default('OPENDRIM'),
        facility: z.string().default(''),
        /** Address the listener binds to; defaults to `bind`. */
        bind: z.string().min(1).optional(),
        /**
         * The only senders whose messages are acted on: their networks, MSH-3/MSH-4 and message families
         * (reports, orders, scheduling, adt). Anything else is answered AR and audited. None by default.
         */
        senders: z
          .array(
            z
              .object({
                name: z.string().min(1),
                from: z.array(z.string().min(1)).min(1),
                application: z.string().min(1).optional(),
                facility: z.string().min(1).optional(),
                messages: z.array(z.enum(['reports', 'orders', 'scheduling', 'adt'])).min(1),
              })
              .strict(),
          )
          .default([]),
        /** MLLP over TLS with the node's tls.cert/key; `mutual` also asks senders for a certificate under tls.ca. */
        tls: z.object({ mutual: z.boolean().default(false) }).strict().optional(),
      })
      .strict()
      .default({ port: 2575, enabled: true, maxMessageBytes: 32 * 1024 * 1024, application: 'OPENDRIM', facility: '', senders: [] }),
    /** DRIMbox source function: reports from the RIS are published to the DMP with a KOS manifest of the exam. */
    source: z
      .object({
        /** AE title (one of `peers`) of the local PACS holding the exams. */
        pacs: z.string().min(1),
        dmp: z
          .object({
            registryUrl: z.string().url(),
            repositoryUrl: z.string().url(),
          })
          .strict(),
        /** The structure publishing (FINESS and name), used as author institution when the report lacks one. */
        organisation: z.object({ finess: z.string().min(1), name: z.string().min(1) }).strict(),
        /** OID under which this box makes submission set uniqueIds, and its XDS sourceId. */
        sourceOid: z.string().regex(/^[0-2](\.(0|[1-9][0-9]*))+$/, 'must be an OID').default('1.2.826.0.1.3680043.10.1355.2'),
        /** Retrieve Location UID written in manifests (identifies this box as Imaging Document Source). */
        retrieveLocationUid: z.string().regex(/^[0-2](\.(0|[1-9][0-9]*))+$/, 'must be a UID').default('1.2.826.0.1.3680043.10.1355.3'),
        /** Viewer link template carried with each publication; {studyUid} and {accessionNumber} are replaced. */
        viewerUrlTemplate: z.string().optional(),
        healthcareFacilityTypeCode: z.object({ code: z.string(), scheme: z.string(), display: z.string().optional() }).default({ code: 'SA07', scheme: '1.2.250.1.71.4.2.4', display: 'Cabinet de radiologie' }),
        practiceSettingCode: z.object({ code: z.string(), scheme: z.string(), display: z.string().optional() }).default({ code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9', display: 'Etablissement de santé' }),
        /** Submission set contentTypeCode (TRE_R209 TypeActivite, 1.2.250.1.213.2.2); the ANS model uses 04. */
        contentTypeCode: z.object({ code: z.string(), scheme: z.string(), display: z.string().optional() }).default({ code: '04', scheme: '1.2.250.1.213.2.2', display: 'Hospitalisation de jour' }),
        /** The publishing DRIMbox as author of the manifests and submission sets (XCN, identifier type EI). */
        device: z
          .object({ id: z.string().min(1), name: z.string().min(1).default('OpenDRIM'), given: z.string().default('DRIMbox'), authority: z.string().regex(/^[0-2](\.(0|[1-9][0-9]*))+$/, 'must be an OID').default('1.2.250.1.71.4.2.1') })
          .strict()
          .optional(),
        /** The publication queue: retries while the PACS or the DMP cannot take a publication, then failure. */
        retry: z
          .object({ firstDelaySeconds: z.number().positive().default(1), maxDelaySeconds: z.number().positive().default(300), giveUpAfterHours: z.number().positive().default(24) })
          .strict()
          .default({ firstDelaySeconds: 1, maxDelaySeconds: 300, giveUpAfterHours: 24 }),
      })
      .strict()
      .optional(),
    /**
     * The DRIMbox-to-DRIMbox exchange port: WADO-RS of this box's exams for other DRIMboxes (mutual TLS with
     * tls.cert/key/ca, peers listed in the signed trust list, a professional token on every request), and the
     * identity this box uses when it calls other boxes.
     */
    exchange: z
      .object({
        port: z.number().int().min(0).max(65535).default(8443),
        /** Base URL other boxes reach this port under (written in KOS Retrieve URLs); derived from bind/port when absent. */
        publicUrl: z.string().url().optional(),
        /** This box's domain, as the trust list names it: the issuer of the professional tokens it signs. */
        domain: z.string().min(1),
        trustList: z
          .object({
            /** The signed list (JWS compact serialisation). */
            file: z.string().min(1),
            /** PEM certificate or public key of the list authority. */
            authority: z.string().min(1),
            /** How often the file is read again (a list that does not verify leaves the previous one in force). */
            reloadMinutes: z.number().positive().default(60),
          })
          .strict(),
        /** Longest professional token lifetime accepted from a calling box. */
        maxTokenLifetimeSeconds: z.number().int().positive().max(3600).default(600),
        /** AE title (one of `peers`) of the PACS the served exams are fetched from; defaults to source.pacs. */
        pacs: z.string().min(1).optional(),
        /** How exams missing from the store are brought from that PACS. */
        pacsRetrieve: z.enum(['C-GET', 'C-MOVE']).default('C-GET'),
        cache: z
          .object({
            maxGigabytes: z.number().positive().default(100),
            maxAgeHours: z.number().positive().default(24 * 7),
            /** A study used this recently is never evicted (it may be streaming, here or on another node). */
            minResidencyMinutes: z.number().nonnegative().default(30),
            sweepMinutes: z.number().positive().default(10),
          })
          .strict()
          .default({ maxGigabytes: 100, maxAgeHours: 24 * 7, minResidencyMinutes: 30, sweepMinutes: 10 }),
      })
      .strict()
      .optional(),
    /** DRIMbox consumer function: practitioners log in with Pro Santé Connect and open the patient's exams from the DMP. */
    consumer: z
      .object({
        psc: z
          .object({
            issuer: z.string().url(),
            clientId: z.string().min(1),
            /** `tls_client_auth`: mutual TLS with tls.cert/key (what PSC requires of server-side clients); or a client secret. */
            clientAuth: z.enum(['tls_client_auth', 'client_secret_basic']).default('client_secret_basic'),
            /** The client secret, or a file holding it (kept out of the configuration file). */
            clientSecret: z.string().min(1).optional(),
            clientSecretFile: z.string().min(1).optional(),
            scope: z.string().default('openid scope_all'),
            acr: z.string().default('eidas1'),
          })
          .strict(),
        /** The DMP to search; defaults to source.dmp. */
        dmp: z.object({ registryUrl: z.string().url(), repositoryUrl: z.string().url() }).strict().optional(),
        /** Look-back window of the "similar exams" check. */
        redundancyWindowDays: z.number().int().positive().default(365),
        session: z
          .object({ idleMinutes: z.number().positive().default(30), absoluteHours: z.number().positive().default(12) })
          .strict()
          .default({ idleMinutes: 30, absoluteHours: 12 }),
        /** Cookies marked Secure; defaults to true when publicUrl is https. */
        secureCookies: z.boolean().optional(),
        /** Login attempts (login page and PSC callback) per client address per minute; then 429. */
        loginPerMinute: z.number().int().positive().default(30),
        /** Limits per source box (by origin of its Retrieve URLs), e.g. for a site behind a small link. */
        sources: z
          .array(
            z
              .object({
                origin: z.string().url(),
                /** Bandwidth cap shared by every transfer from this box (viewer, import, prefetch). */
                maxMbps: z.number().positive().optional(),
                /** Imports drawing on this box at once (per node). */
                maxConcurrent: z.number().int().positive().optional(),
              })
              .strict(),
          )
          .default([]),
        /** Importing remote exams into the local PACS. */
        import: z
          .object({
            /** Import jobs run at once by a node. */
            parallel: z.number().int().positive().default(2),
            /** AE title (one of `peers`) of the local PACS. */
            pacs: z.string().min(1),
            /** C-STORE, or STOW-RS to the peer's `dicomweb` URL. */
            method: z.enum(['C-STORE', 'STOW-RS']).default('C-STORE'),
            /** Issuer of Patient ID (0010,0021) of local patient IDs (IPP). */
            issuer: z.string().min(1),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    /**
     * Prefetch: from the RIS schedule (SIU over MLLP), the priors of upcoming patients are found in the DMP and
     * brought into the local PACS (consumer.import) before the appointment. See docs/configuration.md.
     */
    prefetch: z
      .object({
        /** The practitioner in whose name priors are fetched when the appointment names none with an RPPS (AIP-3). */
        onBehalfOf: z.object({ id: z.string().min(1), familyName: z.string().optional(), givenName: z.string().optional(), profession: z.string().default('10'), specialty: z.string().optional() }).strict(),
        /** Attributes set on prefetched instances so users can tell external priors in their PACS. */
        tag: z.object({ InstitutionName: z.string().max(64).optional(), StationName: z.string().max(16).optional(), InstitutionalDepartmentName: z.string().max(64).optional() }).strict().optional(),
        /** For a RIS without HL7: poll this Modality Worklist SCP (one of `peers`) for the schedule. */
        worklist: z.object({ peer: z.string().min(1), everyMinutes: z.number().positive().default(15), daysAhead: z.number().int().positive().default(2) }).strict().optional(),
        /** Lead time used when a rule gives none. */
        defaultLeadHours: z.number().positive().default(12),
        /** How often due appointments are looked at. */
        pollSeconds: z.number().positive().default(30),
        /** Appointments whose priors are searched at once (DMP queries, manifests, local PACS checks). */
        searchConcurrency: z.number().int().positive().max(64).default(4),
        rules: z
          .array(
            z
              .object({
                name: z.string().min(1),
                /** Which appointments: modality (AIG-4) and/or procedure code glob (AIS-3, e.g. "ZBQK*"). Empty matches all. */
                match: z.object({ modality: z.string().optional(), procedure: z.string().optional() }).strict().default({}),
                priors: z
                  .object({
                    /** Modalities of the priors wanted; "same" = the appointment's; empty = any. */
                    modalities: z.array(z.string()).default(['same']),
                    /** Words the prior's region/exam label or description must contain (accents ignored); empty = any. */
                    regions: z.array(z.string()).default([]),
                    lookbackDays: z.number().int().positive().default(1825),
                    maxStudies: z.number().int().positive().default(3),
                    /**
                     * Where to look: "dmp" (KOS manifests, images from the source boxes), "pacs:AE" (a peer PACS, one of
                     * `peers`, by C-FIND on the INS in Other Patient IDs), "box:URL" (a peer DRIMbox's exchange
                     * …/dicom-web, by QIDO-RS for the patient, images by WADO-RS).
                     */
                    sources: z.array(z.string().regex(/^(dmp|pacs:[^\\]{1,16}|box:https:\/\/\S+)$/, 'each source is "dmp", "pacs:AE" or "box:https://…/dicom-web"')).min(1).default(['dmp']),
                  })
                  .strict()
                  .default({ modalities: ['same'], regions: [], lookbackDays: 1825, maxStudies: 3, sources: ['dmp'] }),
                leadHours: z.number().positive().optional(),
                /** Transfers for this rule run only in this local time window, "HH:MM-HH:MM" (may cross midnight). */
                allowedHours: z.string().regex(/^\d{2}:\d{2}-\d{2}:\d{2}$/, 'must be HH:MM-HH:MM').optional(),
              })
              .strict(),
          )
          .min(1, 'at least one rule is needed'),
      })
      .strict()
      .optional(),
    /**
     * Routing between institutions: studies that become stable (no new instance for `stableSeconds`) are matched
     * against `rules` and sent to their destinations through a durable outbox (the receiving side: `incoming`).
     */
    routing: z
      .object({
        stableSeconds: z.number().positive().default(60),
        /** The PACS (one of `peers`) routed studies are read from (C-FIND, C-GET). */
        pacs: z.string().min(1).optional(),
        /** Poll `pacs` for new or grown studies of the last `lookbackDays`; without it only HL7 triggers route. */
        watch: z.object({ everySeconds: z.number().positive().default(30), lookbackDays: z.number().int().min(0).default(1) }).strict().optional(),
        destinations: z
          .array(
            z.discriminatedUnion('type', [
              z
                .object({
                  name: z.string().min(1),
                  type: z.literal('opendrim'),
                  /** The other box's exchange base URL (https://host:8443); STOW-RS over mutual TLS. */
                  url: z.string().url(),
                  gzip: z.boolean().default(false),
                  /** Requests in flight at once, and instances per request. */
                  parallel: z.number().int().min(1).max(16).default(3),
                  batch: z.number().int().min(1).max(500).default(20),
                })
                .strict(),
              z.object({ name: z.string().min(1), type: z.literal('dicom'), /** One of `peers`. */ peer: z.string().min(1) }).strict(),
            ]),
          )
          .default([]),
        rules: z
          .array(
            z
              .object({
                name: z.string().min(1),
                /**
                 * All given conditions must hold; each lists accepted values, "*" and "?" as wildcards, case and
                 * accents ignored. DICOM: modality (any of the study's), stationName, institutionName,
                 * referringPhysicianName (PN as FAMILY^GIVEN), referringPhysicianId. HL7 (rules triggered by an
                 * order or report): orderingPhysician (XCN id or FAMILY^GIVEN), destinationFacility (MSH-6/ORC-21).
                 */
                when: z
                  .object({
                    modality: z.array(z.string()).optional(),
                    stationName: z.array(z.string()).optional(),
                    institutionName: z.array(z.string()).optional(),
                    referringPhysicianName: z.array(z.string()).optional(),
                    referringPhysicianId: z.array(z.string()).optional(),
                    orderingPhysician: z.array(z.string()).optional(),
                    destinationFacility: z.array(z.string()).optional(),
                  })
                  .strict()
                  .default({}),
                trigger: z.enum(['stable', 'hl7']).default('stable'),
                destinations: z.array(z.string().min(1)).min(1),
              })
              .strict(),
          )
          .default([]),
        /** Retry policy of the outbox. */
        maxAttempts: z.number().int().positive().default(8),
      })
      .strict()
      .optional(),
    /**
     * Studies from outside the institution (pushed by other boxes' routing, read from patients' CDs) enter the
     * local PACS through identity reconciliation: matched to a local patient, rewritten to the local identity.
     */
    incoming: z
      .object({
        /** The local PACS (one of `peers`) the reconciled studies are stored into. */
        pacs: z.string().min(1),
        /** Issuer of the local identity domain (IssuerOfPatientID written). */
        issuer: z.string().min(1),
        /** Prefix of identifiers created from the reconciliation queue ("create a new patient"). */
        newIdPrefix: z.string().regex(/^[\w.-]{0,16}$/).default('EXT'),
        /** A pushed study is reconciled once no instance has come for this long. */
        stableSeconds: z.number().positive().default(60),
        /** Boxes (trust-list domains) allowed to push studies to the exchange port (automatic routing). */
        acceptFromBoxes: z.array(z.string().min(1)).default([]),
        /** Limits on media (CD/DVD/USB content, zip archives) imported at once. */
        media: z
          .object({ maxBytes: z.number().int().positive().default(16 * 1024 ** 3), maxFiles: z.number().int().positive().default(200_000), maxRatio: z.number().positive().default(200) })
          .strict()
          .default({ maxBytes: 16 * 1024 ** 3, maxFiles: 200_000, maxRatio: 200 }),
      })
      .strict()
      .optional(),
    /**
     * Share links instead of CDs: a time-limited link to one exam for a patient or a correspondent (optionally
     * with an access code given separately), opening the web viewer on that exam only; and a zip of the exam
     * with a DICOMDIR and an offline viewer. Exams come from the local store, or from `pacs` (one of `peers`) on
     * demand (the exchange's study cache when exchange is configured).
     */
    share: z
      .object({
        pacs: z.string().min(1).optional(),
        defaultHours: z.number().positive().default(72),
        maxHours: z.number().positive().default(24 * 90),
        /** Wrong access codes tolerated per link before it locks. */
        codeAttempts: z.number().int().positive().default(5),
        /** Openings and code attempts per client address per minute. */
        perMinute: z.number().int().positive().default(30),
      })
      .strict()
      .optional(),
    /** Roles of practitioners logged in with Pro Santé Connect (the authorisation matrix: docs/security.md). */
    roles: z
      .object({
        /** PSC national identifiers ("8" + RPPS) of this box's administrators. */
        administrators: z.array(z.string().regex(/^[0-9A-Za-z]{1,32}$/)).default([]),
        /** Know-how codes (TRE_R38) of radiologists; check them against the nomenclature your PSC returns. */
        radiologistSpecialties: z.array(z.string().min(1)).default(['SM26', 'SM44']),
        /** Profession codes (TRE_G15) that may view exams as requesting practitioners. */
        requestingProfessions: z.array(z.string().min(1)).default(['10', '40', '50']),
      })
      .strict()
      .default({ administrators: [], radiologistSpecialties: ['SM26', 'SM44'], requestingProfessions: ['10', '40', '50'] }),
    audit: z
      .object({
        /** IHE ATNA export: each audit record also goes to this syslog collector (RFC 5424 over TCP, TLS per RFC 5425). */
        syslog: z
          .object({
            host: z.string().min(1),
            port: z.number().int().min(1).max(65535),
            /** TLS with our certificate (tls.cert/key), the collector checked against tls.ca. */
            tls: z.boolean().default(true),
          })
          .strict()
          .optional(),
        /**
         * Signed checkpoints of the trail, outside its database: appended to `file` (put it on another volume, or
         * one the database's administrators cannot write) and sent to the syslog collector as audit records.
         */
        checkpoints: z
          .object({
            /** Default: audit/checkpoints.jsonl under dataDir. */
            file: z.string().min(1).optional(),
            /** The Ed25519 signing key (made on first start, 0600; its public key beside it, .pub). Default: audit/signing-key.pem under dataDir. */
            keyFile: z.string().min(1).optional(),
            everyMinutes: z.number().positive().default(5),
          })
          .strict()
          .default({ everyMinutes: 5 }),
      })
      .strict()
      .default({ checkpoints: { everyMinutes: 5 } }),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type Peer = z.infer<typeof PeerSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Environment variables that override the file, and the key each one sets. */
const ENV_KEYS: Record<string, { key: string; kind: 'string' | 'int' | 'bool' | 'peers' | 'list' | 'hostport' }> = {
  OPENDRIM_AE_TITLE: { key: 'aeTitle', kind: 'string' },
  OPENDRIM_BIND: { key: 'bind', kind: 'string' },
  OPENDRIM_HTTP_PORT: { key: 'httpPort', kind: 'int' },
  OPENDRIM_DICOM_PORT: { key: 'dicomPort', kind: 'int' },
  OPENDRIM_DATA_DIR: { key: 'dataDir', kind: 'string' },
  OPENDRIM_PUBLIC_URL: { key: 'publicUrl', kind: 'string' },
  OPENDRIM_LOG_LEVEL: { key: 'logLevel', kind: 'string' },
  OPENDRIM_ACCEPT_UNKNOWN_AE: { key: 'dicom.acceptUnknownCallingAe', kind: 'bool' },
  OPENDRIM_FSYNC: { key: 'storage.fsync', kind: 'bool' },
  OPENDRIM_DICOM_TLS_PORT: { key: 'dicomTlsPort', kind: 'int' },
  OPENDRIM_AUDIT_SYSLOG: { key: 'audit.syslog', kind: 'hostport' },
  OPENDRIM_TLS_CERT: { key: 'tls.cert', kind: 'string' },
  OPENDRIM_TLS_KEY: { key: 'tls.key', kind: 'string' },
  OPENDRIM_TLS_CA: { key: 'tls.ca', kind: 'string' },
  OPENDRIM_TLS_REQUIRE_CLIENT_CERT: { key: 'tls.requireClientCert', kind: 'bool' },
  OPENDRIM_DICOMWEB_ANONYMOUS_FROM: { key: 'dicomweb.anonymousFrom', kind: 'list' },
  OPENDRIM_PEERS: { key: 'peers', kind: 'peers' },
  OPENDRIM_HL7_PORT: { key: 'hl7.port', kind: 'int' },
  OPENDRIM_EXCHANGE_PORT: { key: 'exchange.port', kind: 'int' },
  OPENDRIM_PSC_CLIENT_SECRET: { key: 'consumer.psc.clientSecret', kind: 'string' },
  DATABASE_URL: { key: 'databaseUrl', kind: 'string' },
};

/** Where the audit checkpoints and their signing key live. */
export function auditCheckpointFiles(config: Config): { file: string; keyFile: string } {
  const c = config.audit.checkpoints;
  return { file: c.file ?? path.join(config.dataDir, 'audit', 'checkpoints.jsonl'), keyFile: c.keyFile ?? path.join(config.dataDir, 'audit', 'signing-key.pem') };
}

/** `AE@host:port[,AE2@host2:port2]` — the compact peer list accepted in OPENDRIM_PEERS. */
export function parsePeerList(text: string): Peer[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) return JSON.parse(trimmed) as Peer[];
  return trimmed
    .split(',')
    .filter((s) => s.trim() !== '')
    .map((item) => {
      const m = /^([^@]{1,16})@([^:]+):(\d+)$/.exec(item.trim());
      if (!m) throw new ConfigError(`OPENDRIM_PEERS: "${item}" is not AE@host:port`);
      return { aeTitle: m[1]!, host: m[2]!, port: Number(m[3]), anyHost: false };
    });
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = target;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function envValue(name: string, raw: string, kind: string): unknown {
  switch (kind) {
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name}: "${raw}" is not a whole number`);
      // Negative or out of range values are told by the key's own rule (a port: 0 to 65535).
      return Number(raw);
    }
    case 'bool':
      if (!/^(true|false|1|0|yes|no)$/i.test(raw.trim())) throw new ConfigError(`${name}: "${raw}" is not true or false`);
      return /^(true|1|yes)$/i.test(raw.trim());
    case 'peers':
      return parsePeerList(raw);
    case 'list':
      return raw.split(',').map((x) => x.trim()).filter(Boolean);
    case 'hostport': {
      const m = /^(?:(tcp|tls):\/\/)?([^:]+):(\d+)$/.exec(raw.trim());
      if (!m) throw new ConfigError(`${name}: "${raw}" is not [tls://|tcp://]host:port`);
      return { host: m[2], port: Number(m[3]), tls: m[1] !== 'tcp' };
    }
    default:
      return raw;
  }
}

export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  try {
    const parsed: unknown = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
    if (parsed === null || parsed === undefined) return {};
    if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('top level must be a mapping');
    return parsed as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`config file ${file} is not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
  }
}

/**
 * Builds the effective configuration: file (if any), then environment variables, then overrides from code.
 * Every problem is reported with the key that carries it, so an operator knows what to fix.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {}): Config {
  const raw: Record<string, unknown> = opts.file ? readConfigFile(opts.file) : {};
  const env = opts.env ?? process.env;
  for (const [name, { key, kind }] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v !== undefined && v !== '') setPath(raw, key, envValue(name, v, kind));
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) setPath(raw, k, v);
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration${opts.file ? ` (${opts.file})` : ''}:\n${lines.join('\n')}`);
  }
  const cfg = result.data;
  cfg.dataDir = path.resolve(cfg.dataDir);
  const net = new BlockList();
  for (const cidr of cfg.dicomweb.anonymousFrom) {
    try {
      addCidr(net, cidr);
    } catch {
      throw new ConfigError(`invalid configuration: dicomweb.anonymousFrom: "${cidr}" is not an address or CIDR block`);
    }
  }
  if (cfg.tls) {
    for (const k of ['cert', 'key', 'ca'] as const) {
      const f = cfg.tls[k];
      if (f !== undefined && !existsSync(f)) throw new ConfigError(`invalid configuration: tls.${k}: file ${f} does not exist`);
    }
    if (cfg.tls.requireClientCert && !cfg.tls.ca) throw new ConfigError('invalid configuration: tls.requireClientCert needs tls.ca (the authority client certificates must be signed by)');
  }
  if (cfg.audit.syslog?.tls && !cfg.tls) throw new ConfigError('invalid configuration: audit.syslog.tls needs tls.cert, tls.key and tls.ca');
  const seen = new Set<string>();
  for (const p of cfg.peers) {
    if (seen.has(p.aeTitle)) throw new ConfigError(`invalid configuration: peers: AE title ${p.aeTitle} is listed twice`);
    seen.add(p.aeTitle);
  }
  if (cfg.exchange) {
    if (!cfg.tls?.ca) throw new ConfigError('invalid configuration: exchange needs tls.cert, tls.key and tls.ca (DRIMboxes authenticate each other with mutual TLS)');
    for (const k of ['file', 'authority'] as const) {
      const f = cfg.exchange.trustList[k];
      if (!existsSync(f)) throw new ConfigError(`invalid configuration: exchange.trustList.${k}: file ${f} does not exist`);
    }
    const pacs = cfg.exchange.pacs;
    if (pacs && !cfg.peers.some((p) => p.aeTitle === pacs)) throw new ConfigError(`invalid configuration: exchange.pacs: ${pacs} is not one of the configured peers`);
  }
  if (cfg.consumer) {
    if (!cfg.publicUrl) throw new ConfigError('invalid configuration: consumer needs publicUrl (the Pro Santé Connect redirect URI is publicUrl + /auth/callback)');
    if (!cfg.exchange) throw new ConfigError('invalid configuration: consumer needs exchange (images are fetched from other DRIMboxes with this box\'s certificate and trust list)');
    if (!cfg.consumer.dmp && !cfg.source?.dmp) throw new ConfigError('invalid configuration: consumer.dmp (or source.dmp) is needed to search the DMP');
    const psc = cfg.consumer.psc;
    if (psc.clientAuth === 'client_secret_basic' && !psc.clientSecret && !psc.clientSecretFile) throw new ConfigError('invalid configuration: consumer.psc needs clientSecret or clientSecretFile (or clientAuth: tls_client_auth)');
    const imp = cfg.consumer.import;
    if (imp) {
      const peer = cfg.peers.find((p) => p.aeTitle === imp.pacs);
      if (!peer) throw new ConfigError(`invalid configuration: consumer.import.pacs: ${imp.pacs} is not one of the configured peers`);
      if (imp.method === 'STOW-RS' && !peer.dicomweb) throw new ConfigError(`invalid configuration: consumer.import.method STOW-RS needs peers[${imp.pacs}].dicomweb`);
    }
    if (psc.clientSecretFile && !existsSync(psc.clientSecretFile)) throw new ConfigError(`invalid configuration: consumer.psc.clientSecretFile: file ${psc.clientSecretFile} does not exist`);
  }
  const wl = cfg.prefetch?.worklist;
  if (wl && !cfg.peers.some((p) => p.aeTitle === wl.peer)) throw new ConfigError(`invalid configuration: prefetch.worklist.peer: ${wl.peer} is not one of the configured peers`);
  for (const r of cfg.prefetch?.rules ?? [])
    for (const src of r.priors.sources) {
      if (src.startsWith('pacs:') && !cfg.peers.some((p) => p.aeTitle === src.slice(5))) throw new ConfigError(`invalid configuration: prefetch rule ${r.name}: source ${src}: ${src.slice(5)} is not one of the configured peers`);
      if (src.startsWith('box:') && !cfg.exchange) throw new ConfigError(`invalid configuration: prefetch rule ${r.name}: source ${src} needs exchange (this box's certificate and trust list)`);
    }
  if (cfg.prefetch && !cfg.consumer?.import) throw new ConfigError('invalid configuration: prefetch needs consumer (DMP, source boxes) and consumer.import (the local PACS the priors go to)');
  const routing = cfg.routing;
  if (routing) {
    const isPeer = (ae: string) => cfg.peers.some((p) => p.aeTitle === ae);
    if (routing.pacs && !isPeer(routing.pacs)) throw new ConfigError(`invalid configuration: routing.pacs: ${routing.pacs} is not one of the configured peers`);
    if (routing.watch && !routing.pacs) throw new ConfigError('invalid configuration: routing.watch needs routing.pacs (the PACS to watch)');
    const names = new Set<string>();
    for (const [i, d] of routing.destinations.entries()) {
      if (names.has(d.name)) throw new ConfigError(`invalid configuration: routing.destinations[${i}]: name ${d.name} is used twice`);
      names.add(d.name);
      if (d.type === 'dicom' && !isPeer(d.peer)) throw new ConfigError(`invalid configuration: routing.destinations[${i}].peer: ${d.peer} is not one of the configured peers`);
      if (d.type === 'opendrim' && !cfg.exchange) throw new ConfigError(`invalid configuration: routing.destinations[${i}]: sending to another OpenDRIM needs exchange (this box's certificate and trust list)`);
    }
    for (const [i, r] of routing.rules.entries())
      for (const d of r.destinations) if (!names.has(d)) throw new ConfigError(`invalid configuration: routing.rules[${i}] (${r.name}): destination ${d} is not one of routing.destinations`);
  }
  const share = cfg.share;
  if (share?.pacs && !cfg.peers.some((p) => p.aeTitle === share.pacs)) throw new ConfigError(`invalid configuration: share.pacs: ${share.pacs} is not one of the configured peers`);
  if (share && share.defaultHours > share.maxHours) throw new ConfigError('invalid configuration: share.defaultHours is longer than share.maxHours');
  const incoming = cfg.incoming;
  if (incoming) {
    if (!cfg.peers.some((p) => p.aeTitle === incoming.pacs)) throw new ConfigError(`invalid configuration: incoming.pacs: ${incoming.pacs} is not one of the configured peers`);
    if (incoming.acceptFromBoxes.length && !cfg.exchange) throw new ConfigError('invalid configuration: incoming.acceptFromBoxes needs exchange (other boxes push studies to the exchange port)');
  }
  if (cfg.source && !cfg.peers.some((p) => p.aeTitle === cfg.source!.pacs)) throw new ConfigError(`invalid configuration: source.pacs: ${cfg.source.pacs} is not one of the configured peers`);
  return cfg;
}

/** Adds "10.0.0.0/8", "::1/128" or a bare address to a BlockList. */
export function addCidr(list: BlockList, cidr: string): void {
  const [addr, bits] = cidr.split('/');
  const family = isIP(addr ?? '');
  if (!family) throw new Error(`not an IP address: ${cidr}`);
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) list.addAddress(addr!, type);
  else {
    const n = Number(bits);
    if (!Number.isInteger(n) || n < 0 || n > (family === 6 ? 128 : 32)) throw new Error(`bad prefix length in ${cidr}`);
    list.addSubnet(addr!, n, type);
  }
}

/** TLS material read from the configured files, or undefined when TLS is not configured. */
export function tlsMaterial(cfg: Config): { cert: Buffer; key: Buffer; ca?: Buffer; requireClientCert: boolean } | undefined {
  if (!cfg.tls) return undefined;
  return { cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key), ca: cfg.tls.ca ? readFileSync(cfg.tls.ca) : undefined, requireClientCert: cfg.tls.requireClientCert };
}
