import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one node (a registry per node, so several nodes can run in one process in tests). */
export class Metrics {
  readonly registry = new Registry();
  readonly instancesReceived = new Counter({ name: 'opendrim_instances_received_total', help: 'Instances received, by protocol and outcome', labelNames: ['protocol', 'outcome'], registers: [this.registry] });
  readonly bytesReceived = new Counter({ name: 'opendrim_bytes_received_total', help: 'Bytes of instances received', labelNames: ['protocol'], registers: [this.registry] });
  readonly instancesSent = new Counter({ name: 'opendrim_instances_sent_total', help: 'Instances sent, by protocol', labelNames: ['protocol'], registers: [this.registry] });
  readonly associations = new Counter({ name: 'opendrim_dicom_associations_total', help: 'DICOM associations, by event', labelNames: ['event'], registers: [this.registry] });
  readonly activeAssociations = new Gauge({ name: 'opendrim_dicom_associations_active', help: 'DICOM associations open now', registers: [this.registry] });
  readonly errors = new Counter({ name: 'opendrim_errors_total', help: 'Errors, by component', labelNames: ['component'], registers: [this.registry] });
  readonly storeLatency = new Histogram({ name: 'opendrim_store_seconds', help: 'Time to receive and commit one instance', labelNames: ['protocol'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [this.registry] });
  readonly httpLatency = new Histogram({ name: 'opendrim_http_request_seconds', help: 'HTTP request duration', labelNames: ['route', 'method', 'status'], buckets: [0.005, 0.02, 0.1, 0.5, 2, 10, 60], registers: [this.registry] });
  readonly exchangePacsInstances = new Counter({ name: 'opendrim_exchange_pacs_instances_total', help: 'Instances brought from the local PACS to serve other DRIMboxes (cache misses)', registers: [this.registry] });
  readonly prefetchAppointments = new Gauge({ name: 'opendrim_prefetch_appointments', help: 'Appointments of the next 24 hours, by prefetch state', labelNames: ['state'], registers: [this.registry] });
  readonly prefetchReadyShare = new Gauge({ name: 'opendrim_prefetch_ready_before_appointment_ratio', help: 'Share of the appointments of the last 24 hours whose priors were ready before they began', registers: [this.registry] });
  readonly publications = new Counter({ name: 'opendrim_dmp_publications_total', help: 'Publication requests worked through, by outcome (published, replaced, withdrawn, failed, ...)', labelNames: ['outcome'], registers: [this.registry] });
  readonly publicationQueue = new Gauge({ name: 'opendrim_dmp_publication_queue', help: 'Entries of the publication queue, by status (pending, failed, done)', labelNames: ['status'], registers: [this.registry] });
  readonly storageFree = new Gauge({ name: 'opendrim_storage_free_bytes', help: 'Free bytes on the storage file system (receiving stops below storage.minFreeMegabytes)', registers: [this.registry] });
  readonly auditBacklog = new Gauge({ name: 'opendrim_audit_backlog', help: 'Audit records not yet written to the trail (database unavailable): kept and retried, never dropped', registers: [this.registry] });
  readonly indexSize = new Gauge({ name: 'opendrim_index_objects', help: 'Objects in the index, by level', labelNames: ['level'], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'opendrim_' });
  }
}
