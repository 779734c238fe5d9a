import { randomUUID } from 'node:crypto';
import { escape, hl7Now } from '../../hl7/message.js';

/**
 * The RIS stand-in's messages: an imaging report as a CI-SIS CDA R2 level 1 (PDF body) and the HL7 v2 messages
 * that carry it (ORU^R01 in the "CI-SIS CDA in HL7 v2" profile, as in the ANS DRIM-M data sets), plus OMI^O23
 * for a change of exam content. Test and demo material, separate from product code.
 */

/** The patient as the RIS knows it: INS and local IPP, birth names, birth date, sex. */
export interface PatientSpec {
  ins: string;
  insOid?: string;
  ipp: string;
  ippOid?: string;
  family: string;
  given: string;
  birthDate: string;
  sex: 'M' | 'F' | 'U';
}

/** One exam a report documents: its study, accession (with issuer), placer order, act and codes. */
export interface ExamSpec {
  studyUid?: string;
  accessionNumber: string;
  /** Issuer of the accession number (ps3-20:accessionNumber/@root). */
  accessionRoot?: string;
  /** The requester's order number (order/id), distinct from the accession number as in the ANS reports. */
  placerOrderNumber?: string;
  placerOrderRoot?: string;
  /** serviceEvent/code (LOINC) and its CCAM, modality and region translations. */
  act?: { code: string; display: string };
  ccam?: { code: string; display: string };
  modality?: string;
  region?: { code: string; display: string };
  start?: string;
  stop?: string;
}

export interface ReportSpec extends PatientSpec {
  studyUid?: string;
  accessionNumber: string;
  accessionRoot?: string;
  placerOrderNumber?: string;
  setId?: string;
  version?: number;
  documentId?: string;
  /** HL7 TS of the report's validation. */
  effectiveTime?: string;
  examCode?: { code: string; display: string };
  /** The acquisition modality and anatomical region translations of the act; left out when not given. */
  modality?: string;
  region?: { code: string; display: string };
  radiologist?: { rpps: string; family: string; given: string };
  organisation?: { finess: string; name: string };
  /** healthCareFacility/code (TRE_R02 SecteurActivite) and the organisation's standardIndustryClassCode. */
  facilityType?: { code: string; display: string };
  practiceSetting?: { code: string; display: string };
  confidentiality?: 'N' | 'R' | 'V';
  /** Several exams in one report (two documentationOf/serviceEvent and two inFulfillmentOf); else one from the fields above. */
  exams?: ExamSpec[];
  text?: string;
}

const x = (v: string) => v.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A one-page PDF with the report text (enough for a viewer to render). */
export function reportPdf(lines: string[]): Buffer {
  const content = `BT /F1 11 Tf 50 780 Td 14 TL ${lines.map((l) => `(${l.replace(/[()\\]/g, '\\$&').replace(/[^\x20-\x7e]/g, '?')}) '`).join(' ')} ET`;
  const objs = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  objs.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')}trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** The exams of a report spec: its own list, or the single exam its top-level fields describe. */
export function examsOf(s: ReportSpec): ExamSpec[] {
  return s.exams ?? [{ studyUid: s.studyUid, accessionNumber: s.accessionNumber, accessionRoot: s.accessionRoot, placerOrderNumber: s.placerOrderNumber, ccam: s.examCode, modality: s.modality, region: s.region }];
}

/** A CI-SIS IMG-CR-IMG report (CDA R2 level 1, PDF body) laid out as the ANS DRIM-M reports are. */
export function imagingReportCda(s: ReportSpec): string {
  const insOid = s.insOid ?? '1.2.250.1.213.1.4.10';
  const rad = s.radiologist ?? { rpps: '801234567890', family: 'MARTIN', given: 'Claire' };
  const org = s.organisation ?? { finess: '750803447', name: 'Centre de radiologie OpenDRIM' };
  const practice = s.practiceSetting ?? { code: 'AMBULATOIRE', display: 'Ambulatoire' };
  const when = s.effectiveTime ?? hl7Now();
  const exams = examsOf(s);
  const first = exams[0]!;
  const pdf = reportPdf([`Compte rendu d'imagerie - ${first.ccam?.display ?? 'Radiographie du thorax'}`, `Patient: ${s.family} ${s.given} (${s.birthDate})`, `Examen: ${exams.map((e) => e.accessionNumber).join(', ')}`, '', s.text ?? 'Pas d anomalie decelable.', '', `Dr ${rad.given} ${rad.family}`]);
  const organisation = `<representedOrganization><id root="1.2.250.1.71.4.2.2" extension="${x(org.finess)}"/><name>${x(org.name)}</name><standardIndustryClassCode code="${x(practice.code)}" displayName="${x(practice.display)}" codeSystem="1.2.250.1.213.1.1.4.9"/></representedOrganization>`;
  const person = (tag: string) => `<${tag}><id root="1.2.250.1.71.4.2.1" extension="${x(rad.rpps)}"/><code code="G15_10/SM44" displayName="Médecin - Radio-diagnostic (SM)" codeSystem="1.2.250.1.213.1.1.4.5"/><assignedPerson><name><given>${x(rad.given)}</given><family>${x(rad.family)}</family></name></assignedPerson>${organisation}</${tag}>`;
  const order = (e: ExamSpec, i: number) =>
    `<inFulfillmentOf><order><id root="${x(e.placerOrderRoot ?? '1.2.250.1.213.4.5.2.6')}" extension="${x(e.placerOrderNumber ?? `OPN-${e.accessionNumber}-${i + 1}`)}"/><ps3-20:accessionNumber root="${x(e.accessionRoot ?? '1.2.250.1.925.994044785528.27')}" extension="${x(e.accessionNumber)}"/></order></inFulfillmentOf>`;
  const event = (e: ExamSpec) => {
    const act = e.act ?? { code: '24627-2', display: 'CT Chest' };
    const ccam = e.ccam ?? { code: 'ZBQK002', display: 'Radiographie du thorax' };

    return `<documentationOf><serviceEvent classCode="ACT">
    ${e.studyUid ? `<id root="${x(e.studyUid)}"/>` : ''}
    <code code="${x(act.code)}" displayName="${x(act.display)}" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC">
      <translation code="${x(ccam.code)}" displayName="${x(ccam.display)}" codeSystem="1.2.250.1.213.2.5" codeSystemName="CCAM"/>
      ${e.modality ? `<translation code="${x(e.modality)}" displayName="${x(e.modality)}" codeSystem="1.2.840.10008.2.16.4" codeSystemName="DCM"><qualifier><name code="121139" displayName="Modalité d'imagerie" codeSystem="1.2.840.10008.2.16.4"/></qualifier></translation>` : ''}
      ${e.region ? `<translation code="${x(e.region.code)}" displayName="${x(e.region.display)}" codeSystem="2.16.840.1.113883.6.96" codeSystemName="SNOMED CT"><qualifier><name code="39111-0" displayName="localisation anatomique" codeSystem="2.16.840.1.113883.6.1"/></qualifier></translation>` : ''}
    </code>
    <effectiveTime><low value="${x(e.start ?? `${when.slice(0, 8)}080000+0100`)}"/><high value="${x(e.stop ?? `${when.slice(0, 8)}083000+0100`)}"/></effectiveTime>
    <performer typeCode="PRF">${person('assignedEntity')}</performer>
  </serviceEvent></documentationOf>`;
  };
  const facility = s.facilityType ?? { code: 'SA07', display: 'Cabinet de radiologie' };
  return `<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:ps3-20="urn:dicom-org:ps3-20">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <templateId root="1.3.6.1.4.1.19376.1.2.20"/>
  <id root="${x(s.documentId ?? `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`)}`)}"/>
  <code code="18748-4" displayName="CR d'imagerie médicale" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC"/>
  <title>CR d'imagerie médicale</title>
  <effectiveTime value="${when}"/>
  <confidentialityCode code="${s.confidentiality ?? 'N'}" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="${x(s.setId ?? randomUUID().toUpperCase())}"/>
  <versionNumber value="${s.version ?? 1}"/>
  <recordTarget><patientRole>
    <id root="${insOid}" extension="${x(s.ins)}"/>
    <id root="${x(s.ippOid ?? '1.2.250.1.213.4.5.2.4')}" extension="${x(s.ipp)}"/>
    <patient classCode="PSN">
      <name>${s.family ? `<family qualifier="BR">${x(s.family)}</family>` : ''}${s.given ? `<given qualifier="BR">${x(s.given)}</given>` : ''}</name>
      <administrativeGenderCode code="${s.sex}" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="${x(s.birthDate)}"/>
    </patient>
  </patientRole></recordTarget>
  <author><time value="${when}"/>${person('assignedAuthor')}</author>
  <custodian><assignedCustodian><representedCustodianOrganization><id root="1.2.250.1.71.4.2.2" extension="${x(org.finess)}"/><name>${x(org.name)}</name></representedCustodianOrganization></assignedCustodian></custodian>
  <legalAuthenticator><time value="${when}"/><signatureCode code="S"/>${person('assignedEntity')}</legalAuthenticator>
  ${exams.map(order).join('\n  ')}
  ${exams.map(event).join('\n  ')}
  <componentOf><encompassingEncounter><code code="AMB" codeSystem="2.16.840.1.113883.5.4"/><effectiveTime><low value="${when.slice(0, 8)}"/></effectiveTime>
    <location><healthCareFacility><id root="1.2.250.1.71.4.2.2" extension="${x(org.finess)}"/><code code="${x(facility.code)}" displayName="${x(facility.display)}" codeSystem="1.2.250.1.71.4.2.4"/></healthCareFacility></location>
  </encompassingEncounter></componentOf>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">${pdf.toString('base64')}</text></nonXMLBody></component>
</ClinicalDocument>`;
}

export interface OruOptions {
  controlId?: string;
  /** ORC-1: "NW" publishes, "CA" withdraws. */
  orderControl?: 'NW' | 'CA' | 'SC';
  flags?: Partial<Record<'MASQUE_PS' | 'INVISIBLE_PATIENT' | 'INVISIBLE_REP_LEGAUX' | 'MODIF_CONF_CODE' | 'DESTDMP', 'Y' | 'N'>>;
  /** Leave the INS out of PID-3 (to test refusals). */
  withoutIns?: boolean;
  /** PID-32 identity reliability code; VALI (a qualified identity) by default, '' for none. */
  identityReliability?: string;
  /** OBX-11 of the report: F (final) by default, D to delete (de-publication). */
  resultStatus?: 'F' | 'D' | 'C';
  /** OBR-18 when it differs from the CDA's accession number (the ANS reports carry the RIS's own number). */
  obrAccession?: string;
}

/** The PID segment a RIS sends: INS and IPP in PID-3, birth names, birth date, sex. */
export function pid(s: PatientSpec, withoutIns = false, identityReliability = 'VALI'): string {
  const ids = [...(withoutIns ? [] : [`${s.ins}^^^ASIP-SANTE-INS-NIR&${s.insOid ?? '1.2.250.1.213.1.4.10'}&ISO^INS`]), `${s.ipp}^^^HOPITAL&${s.ippOid ?? '1.2.250.1.213.4.5.2.4'}&ISO^PI`].join('~');
  // PID-32 (identity reliability) as the ANS messages carry it, after PID-8 and 23 empty fields.
  return `PID|||${ids}||${escape(s.family)}^${escape(s.given)}^^^^^L||${s.birthDate}|${s.sex}${identityReliability ? `${'|'.repeat(24)}${identityReliability}` : ''}`;
}

export function oruR01(s: ReportSpec, cda: string, o: OruOptions = {}): string {
  const id = o.controlId ?? `MSG${Date.now()}${Math.floor(Math.random() * 1000)}`;
  const rad = s.radiologist ?? { rpps: '801234567890', family: 'MARTIN', given: 'Claire' };
  const flags = { MASQUE_PS: 'N', INVISIBLE_PATIENT: 'N', INVISIBLE_REP_LEGAUX: 'N', MODIF_CONF_CODE: 'N', DESTDMP: 'Y', ...o.flags };
  return [
    `MSH|^~\\&|RIS_SIM|CABINET|OPENDRIM|CABINET|${hl7Now()}||ORU^R01^ORU_R01|${id}|P|2.5|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2`,
    pid(s, o.withoutIns, o.identityReliability ?? 'VALI'),
    `PV1|1|O`,
    `ORC|${o.orderControl ?? 'NW'}|`,
    `OBR|1|${s.placerOrderNumber ?? s.accessionNumber}^RIS_SIM|${o.obrAccession ?? s.accessionNumber}^RIS_SIM|18748-4^CR d'imagerie médicale^LN||||||||||||${rad.rpps}^${escape(rad.family)}^${escape(rad.given)}^^^DR^^^^D^^^RPPS||${o.obrAccession ?? s.accessionNumber}|||||||F`,
    `OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^TEXT^XML^Base64^${Buffer.from(cda, 'utf8').toString('base64')}||||||${o.resultStatus ?? 'F'}`,
    ...Object.entries(flags).map(([k, v], i) => `OBX|${i + 2}|CE|${k}^${k}^MetaDMPMSS||${v}^^expandedYes-NoIndicator||||||F`),
  ].join('\r') + '\r';
}

export function omiO23(s: ReportSpec, o: { controlId?: string } = {}): string {
  return [
    `MSH|^~\\&|RIS_SIM|CABINET|OPENDRIM|CABINET|${hl7Now()}||OMI^O23^OMI_O23|${o.controlId ?? `OMI${Date.now()}`}|P|2.5|||||FRA|UNICODE UTF-8`,
    pid(s),
    'ORC|XO|',
    `TQ1|||||||${hl7Now().slice(0, 14)}`,
    `OBR|1|${s.accessionNumber}^RIS_SIM|${s.accessionNumber}^RIS_SIM|${s.examCode?.code ?? 'ZBQK002'}^${escape(s.examCode?.display ?? 'Radiographie du thorax')}^CCAM||||||||||||||${s.accessionNumber}`,
    `IPC|${s.accessionNumber}|${s.accessionNumber}|${s.studyUid ?? ''}|${s.accessionNumber}`,
  ].join('\r') + '\r';
}
