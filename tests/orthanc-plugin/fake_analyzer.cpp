// DEVELOPMENT ONLY: a stand-in for the pipeline's Analyzer (pipeline/analyzer.h) that lets the
// plugin's queue, jobs, storage and REST mechanics run before the real pipeline library exists.
// orthanc-plugin/CMakeLists.txt links it only when the target unibiomed_pipeline is absent; the
// plugin then says so in its log and in GET /unibiomed/status. It reads the DICOM for real (DCMTK:
// parse, group by series, decode pixels) so that corrupt and unsupported input give the outcomes
// the real pipeline gives, but it runs no model and writes minimal SEG/SR stand-ins.
// Environment: UNIBIOMED_FAKE_ANALYZER_DELAY_MS (per instance) slows it down for restart tests.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmimgle/dcmimage.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "pipeline/analyzer.h"

namespace unibiomed::pipeline {

namespace {

std::string uid_from(const std::string& seed) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : seed) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return "2.25." + std::to_string(h);
}

std::string get(DcmDataset& ds, const DcmTagKey& tag) {
  OFString v;
  if (ds.findAndGetOFString(tag, v).good()) return v.c_str();
  return {};
}

std::vector<uint8_t> to_bytes(DcmFileFormat& file, const std::string& what) {
  char name[] = "/tmp/unibiomed-fake-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) throw PipelineError("fake analyzer: cannot create a temporary file for " + what);
  ::close(fd);
  const OFCondition status = file.saveFile(name, EXS_LittleEndianExplicit);
  std::ifstream in(name, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(name);
  if (status.bad()) throw PipelineError("fake analyzer: cannot write " + what + ": " + status.text());
  return bytes;
}

struct Source {
  std::string id;
  std::unique_ptr<DcmFileFormat> file;
};

class FakeAnalyzer final : public Analyzer {
 public:
  explicit FakeAnalyzer(AnalyzerSettings settings) : settings_(std::move(settings)) {
    if (const char* d = std::getenv("UNIBIOMED_FAKE_ANALYZER_DELAY_MS")) delay_ms_ = std::atoi(d);
  }

  StudyResult analyze(const std::vector<InstanceInput>& instances, const AnalysisRequest& request,
                      const ProgressCallback& progress, const std::atomic<bool>* cancel,
                      const std::string& seed) override {
    StudyResult result;
    std::map<std::string, std::vector<Source>> by_series;
    std::vector<std::string> order;
    for (const auto& input : instances) {
      auto file = std::make_unique<DcmFileFormat>();
      DcmInputBufferStream stream;
      stream.setBuffer(input.bytes.data(), static_cast<offile_off_t>(input.bytes.size()));
      stream.setEos();
      file->transferInit();
      OFCondition status = file->read(stream);
      file->transferEnd();
      if (status.bad()) {
        result.series.push_back({"", "", "", SeriesOutcome::State::Failed,
                                 "instance " + input.id + " is not readable DICOM: " + status.text(), 0});
        continue;
      }
      const std::string series = get(*file->getDataset(), DCM_SeriesInstanceUID);
      if (!by_series.count(series)) order.push_back(series);
      by_series[series].push_back({input.id, std::move(file)});
    }
    DcmDataset* reference = nullptr;
    size_t done = 0;
    for (const auto& series : order) {
      auto& sources = by_series[series];
      DcmDataset& first = *sources.front().file->getDataset();
      result.study_instance_uid = get(first, DCM_StudyInstanceUID);
      SeriesOutcome outcome{series, get(first, DCM_Modality), get(first, DCM_SeriesDescription),
                            SeriesOutcome::State::Analysed, "", 0};
      static const std::set<std::string> supported = {"CT", "MR", "CR", "DX", "US", "PT", "MG", "XA", "SM", "OP"};
      if (!supported.count(outcome.modality)) {
        outcome.state = SeriesOutcome::State::Skipped;
        outcome.reason = "modality " + outcome.modality + " is not one the model reads";
        result.series.push_back(outcome);
        continue;
      }
      for (auto& s : sources) {
        if (cancel && cancel->load()) throw PipelineError("cancelled");
        if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
        DcmDataset& ds = *s.file->getDataset();
        DicomImage image(&ds, ds.getOriginalXfer(), CIF_MayDetachPixelData);
        if (image.getStatus() != EIS_Normal) {
          outcome.state = SeriesOutcome::State::Failed;
          outcome.reason = "cannot decode the pixel data of instance " + s.id + ": " +
                           DicomImage::getString(image.getStatus());
          break;
        }
        ++outcome.views;
        ++done;
        if (progress)
          progress({static_cast<double>(done) / static_cast<double>(instances.size()), "model", series,
                    "fake model: view " + std::to_string(outcome.views) + "/" + std::to_string(sources.size())});
      }
      result.series.push_back(outcome);
      if (outcome.state != SeriesOutcome::State::Analysed) continue;
      reference = &first;
      Finding f;
      f.label = "Region";
      f.text = "fake finding (development analyzer, no model)";
      f.task = request.tasks.empty() ? "fake" : request.tasks.front();
      f.series_instance_uid = series;
      f.tracking_uid = uid_from(seed + "/track/" + series);
      f.segment_number = 1;
      f.confidence = 0.5;
      f.measurements.push_back({"Area", 1.0, "mm2"});
      f.key_instance_uid = get(first, DCM_SOPInstanceUID);
      f.key_frame = 1;
      result.findings.push_back(f);
      result.objects.push_back(make_object("SEG", first, seed + "/seg/" + series));
    }
    for (const auto& q : request.questions) result.answers.push_back("fake answer to: " + q.text);
    if (reference) result.objects.push_back(make_object("SR", *reference, seed + "/sr"));
    result.summary_json = R"({"Analyzer":"fake"})";
    result.weights_hash = "fake";
    return result;
  }

  AskResult ask(const InstanceInput& instance, int frame, const Question& question, const std::string& seed) override {
    AskResult r;
    r.text = "fake answer to: " + question.text;
    if (question.text.find("segment") == std::string::npos) return r;
    DcmFileFormat file;
    if (file.loadFile(instance.path.c_str()).bad() && !instance.bytes.empty()) {
      DcmInputBufferStream stream;
      stream.setBuffer(instance.bytes.data(), static_cast<offile_off_t>(instance.bytes.size()));
      stream.setEos();
      file.transferInit();
      const OFCondition status = file.read(stream);
      file.transferEnd();
      if (status.bad()) throw PipelineError("fake analyzer: instance " + instance.id + " is not readable DICOM");
    }
    r.seg = make_object("SEG", *file.getDataset(), seed + "/ask-seg/" + std::to_string(frame));
    Finding f;
    f.label = "Region";
    f.text = r.text;
    f.task = "question";
    f.segment_number = 1;
    r.findings.push_back(f);
    return r;
  }

  std::string model_description() const override { return "fake analyzer (development build, no model)"; }
  std::string weights_hash() const override { return "fake"; }

 private:
  ResultObject make_object(const std::string& kind, DcmDataset& source, const std::string& seed) {
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    for (const DcmTagKey& tag : {DCM_PatientName, DCM_PatientID, DCM_PatientBirthDate, DCM_PatientSex,
                                 DCM_StudyInstanceUID, DCM_StudyDate, DCM_StudyTime, DCM_StudyID, DCM_AccessionNumber})
      ds.putAndInsertString(tag, get(source, tag).c_str());
    ResultObject o;
    o.kind = kind;
    o.series_instance_uid = uid_from(seed + "/series");
    o.sop_instance_uid = uid_from(seed + "/instance");
    ds.putAndInsertString(DCM_SOPClassUID, kind == "SEG" ? UID_SegmentationStorage : UID_Comprehensive3DSRStorage);
    ds.putAndInsertString(DCM_SOPInstanceUID, o.sop_instance_uid.c_str());
    ds.putAndInsertString(DCM_SeriesInstanceUID, o.series_instance_uid.c_str());
    ds.putAndInsertString(DCM_Modality, kind.c_str());
    ds.putAndInsertString(DCM_Manufacturer, "UniBiomed (fake analyzer)");
    ds.putAndInsertString(DCM_SeriesDescription, ("UniBiomed " + kind + " (fake)").c_str());
    ds.putAndInsertString(DCM_SeriesNumber, kind == "SEG" ? "9001" : "9002");
    ds.putAndInsertString(DCM_InstanceNumber, "1");
    o.bytes = to_bytes(file, kind);
    return o;
  }

  AnalyzerSettings settings_;
  int delay_ms_ = 0;
};

}  // namespace

std::unique_ptr<Analyzer> Analyzer::create(const AnalyzerSettings& settings) {
  if (!std::filesystem::is_regular_file(settings.model_dir / "config.json"))
    throw PipelineError("no config.json in " + settings.model_dir.string());
  return std::make_unique<FakeAnalyzer>(settings);
}

}  // namespace unibiomed::pipeline
