// Everything the parts of the node share, built once per Orthanc process from the configuration.
// Jobs and worker tasks hold it by shared_ptr, so it outlives the last job Orthanc finalises.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "orthanc-plugin/configuration.h"
#include "orthanc-plugin/forwarder.h"
#include "orthanc-plugin/model_host.h"
#include "orthanc-plugin/orthanc_client.h"
#include "orthanc-plugin/result_store.h"
#include "orthanc-plugin/study_queue.h"
#include "orthanc-plugin/study_record.h"

namespace unibiomed::dicom {
struct Series;
}

namespace unibiomed::orthanc {

// Why the automatic analysis would ask the model nothing about a series (pipeline/study_plan.h
// automatic_analysis_screen: its modality, no task rule for it, only targets the checkpoint was
// not trained on), "" when it would ask something. The trigger judges a series that arrives in
// an analysed study by its first file with it; empty: not judged (the run decides).
using SeriesScreen = std::function<std::string(const dicom::Series& series)>;

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
  NodeServices(OrthancPluginContext* context, Configuration configuration, ModelHost::Factory factory,
               SeriesScreen series_screen = {})
      : config(std::move(configuration)),
        client(context),
        records(client),
        queue(make_queue(config, client)),
        model(config.analyzer, std::move(factory)),
        results(client, records),
        forwarder(client, config.forward, config.forward_timeout_seconds),
        screen(std::move(series_screen)) {}

  const Configuration config;
  const OrthancClient client;
  const StudyRecords records;
  const std::unique_ptr<StudyQueue> queue;
  ModelHost model;
  const ResultStore results;
  const Forwarder forwarder;
  const SeriesScreen screen;
};

}  // namespace unibiomed::orthanc
