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

struct NodeServices {
  NodeServices(OrthancPluginContext* context, Configuration configuration, ModelHost::Factory factory)
      : config(std::move(configuration)),
        client(context),
        records(client),
        queue(make_local_study_queue(client)),
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
