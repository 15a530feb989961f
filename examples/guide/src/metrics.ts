import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { RaftSupervisor } from '@tsraft/core';
import { instrumentRaftNode } from '@tsraft/opentelemetry';

/**
 * Serves the node's metrics for Prometheus to scrape at `http://host:port/metrics`: the
 * OpenTelemetry SDK and its Prometheus exporter are your app's choice; `@tsraft/opentelemetry`
 * only reports through the OpenTelemetry API.
 */
export function serveMetrics<C, R>(
  supervisor: RaftSupervisor<C, R>,
  address: { host: string; port: number },
) {
  const exporter = new PrometheusExporter({ host: address.host, port: address.port });
  const provider = new MeterProvider({ readers: [exporter] });
  const instrumentation = instrumentRaftNode(supervisor, { meter: provider.getMeter('bank') });
  return {
    async close() {
      instrumentation.close();
      await provider.shutdown();
    },
  };
}
