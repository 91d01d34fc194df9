// The Analyzer on a given engine: what Analyzer::create builds with the real model, and what
// tests and benchmarks use to drive the pipeline with an engine of their own.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <memory>

#include "pipeline/analyzer.h"
#include "pipeline/grounding_engine.h"

namespace unibiomed::pipeline {

// Loads the task rules (settings.task_rules or the defaults) and checks their window presets
// against dicom/'s; throws PipelineError naming the file and the problem.
std::unique_ptr<Analyzer> make_analyzer(const AnalyzerSettings& settings, std::unique_ptr<GroundingEngine> engine);
// The options of the engine Analyzer::create loads for `settings` (model and tokenizer folders,
// device, dtype, threads, generation limit, batch size), for callers that load it themselves.
EngineOptions engine_options(const AnalyzerSettings& settings);

// Seconds per stage of the last analyze() (for the benchmark): the engine's stages plus
// reading, rendering (decode + window + pad), mapping masks back, consolidation, writing the
// SEG/SR and previews.
struct StageTimings {
  double reading = 0, rendering = 0, vision = 0, grounding = 0, language = 0, mapping = 0, consolidation = 0,
         writing = 0, previews = 0, total = 0;
  double propagation = 0;  // video mode: SAM2 memory propagation through the frames
  long views = 0;
  double model() const { return vision + grounding + language + propagation; }
};
// The timings of the analyzer's last analyze(); throws PipelineError if `analyzer` was not made
// by make_analyzer/Analyzer::create.
StageTimings last_timings(const Analyzer& analyzer);

}  // namespace unibiomed::pipeline
