// Everything the parts of the node share, built once per Orthanc process from the configuration.
// Jobs and worker tasks hold it by shared_ptr, so it outlives the last job Orthanc finalises.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <memory>

#include "orthanc-plugin/configuration.h"
#include "orthanc-plugin/forwarder.h"
#include "orthanc-plugin/model_host.h"
#include "orthanc-plugin/orthanc_client.h"
#include "orthanc-plugin/result_store.h"
#include "orthanc-plugin/study_queue.h"
#include "orthanc-plugin/study_record.h"

namespace unibiomed::orthanc {

// The local queue, or the cluster's shared one (UniBiomed.Queue "postgresql"); the shared queue
// connects on first use, so that building it never delays Orthanc's start.
inline std::unique_ptr<StudyQueue> make_queue(const Configuration& config, const OrthancClient& client) {
  if (config.queue != "postgresql") return make_local_study_queue(client);
  SharedQueueSettings settings;
  settings.connection = config.queue_connection;
  settings.node = config.cluster_node;
  settings.lease_seconds = config.lease_seconds;
  return make_postgres_study_queue(settings);
}

struct NodeServices {
  NodeServices(OrthancPluginContext* context, Configuration configuration, ModelHost::Factory factory)
      : config(std::move(configuration)),
        client(context),
        records(client),
        queue(make_queue(config, client)),
        model(config.analyzer, std::move(factory)),
        results(client, records),
        forwarder(client, config.forward, config.forward_timeout_seconds) {}

  const Configuration config;
  const OrthancClient client;
  const StudyRecords records;
  const std::unique_ptr<StudyQueue> queue;
  ModelHost model;
  const ResultStore results;
  const Forwarder forwarder;
};

}  // namespace unibiomed::orthanc
