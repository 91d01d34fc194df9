// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/rest_api.h"

#include <future>

#include "dicom/modality.h"
#include "inference/error.h"
#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/request_checks.h"
#include "orthanc-plugin/result_json.h"

namespace unibiomed::orthanc {

namespace {

// A request's body is small: questions and task names. Larger or deeper bodies are refused before
// they are parsed into values that are copied and printed recursively (a deeply nested array
// would overflow the small stacks of Orthanc's HTTP threads).
constexpr size_t kMaxBodyBytes = size_t(1) << 20;
constexpr int kMaxBodyDepth = 8;

nlohmann::json parse_body(const std::string& body) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return nullptr;
  if (body.size() > kMaxBodyBytes)
    throw PluginError("the request body has " + std::to_string(body.size()) + " bytes; requests are at most " +
                          std::to_string(kMaxBodyBytes) + " (1 MiB)",
                      413);
  // Nesting, counted before parsing (outside strings).
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxBodyDepth)
        throw PluginError("the request body nests arrays and objects more than " + std::to_string(kMaxBodyDepth) +
                              " deep; no request of this API does",
                          400);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw PluginError(std::string("the request body is not JSON: ") + e.what(), 400);
  }
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// FNV-1a: a stable 64-bit hash (std::hash may differ between builds), for deterministic UIDs.
std::string stable_hash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return std::to_string(h);
}

}  // namespace

RestApi::RestApi(std::shared_ptr<NodeServices> services, std::shared_ptr<AnalysisScheduler> scheduler,
                 std::string version, std::string build_note)
    : services_(std::move(services)),
      scheduler_(std::move(scheduler)),
      version_(std::move(version)),
      build_note_(std::move(build_note)) {}

RestApi::RestApi(std::string reason, std::string version)
    : unavailable_(std::move(reason)), version_(std::move(version)) {}

std::string RestApi::method_names(unsigned methods) {
  std::string names;
  if (methods & kGet) names += "GET";
  if (methods & kPost) names += std::string(names.empty() ? "" : ",") + "POST";
  return names;
}

unsigned RestApi::method_bit(const std::string& name) {
  if (name == "GET") return kGet;
  if (name == "POST") return kPost;
  return 0;
}

std::string RestApi::path_of(Handler handler, const std::string& id) {
  for (const auto& route : kRoutes)
    if (route.handler == handler) {
      std::string path = route.path;
      const size_t group = path.find("{id}");
      return group == std::string::npos ? path : path.replace(group, 4, id);
    }
  return {};
}

RestAnswer RestApi::handle(size_t route, const std::string& method, const std::vector<std::string>& groups,
                           const std::string& body) const {
  if (route >= std::size(kRoutes)) return {404, {{"Error", "unknown route"}}};
  const Route& r = kRoutes[route];
  if ((method_bit(method) & r.methods) == 0) {
    const std::string allowed = method_names(r.methods);
    return {405, {{"Error", r.path + std::string(" accepts ") + allowed + " only, not " + method}}, allowed};
  }
  if (!unavailable_.empty())
    return {503, {{"Error", "the UniBiomed plugin is not running: " + unavailable_}, {"Version", version_}}};
  try {
    return (this->*r.handler)(groups, body);
  } catch (const PluginError& e) {
    return {e.http_status() >= 400 ? e.http_status() : 500, {{"Error", e.what()}}};
  } catch (const inference::DeviceOutOfMemory& e) {
    // The GPU was full for this request (another analysis holds it, or the image is too large
    // for it now): the request itself is fine, so "try again later", not a server fault.
    return {503, {{"Error", e.what()}, {"Device", e.device()}}};
  } catch (const std::exception& e) {
    return {500, {{"Error", e.what()}}};
  }
}

RestAnswer RestApi::status(const std::vector<std::string>& /*groups*/, const std::string& /*body*/) const {
  const auto& model = services_->model;
  nlohmann::json j = {
      {"Plugin", "UniBiomed"},
      {"Version", version_},
      {"Ready", model.state() == ModelHost::State::Ready},
      {"Model",
       {{"State", model.state_name()},
        {"Description", model.description()},
        {"WeightsHash", model.weights_hash()},
        {"Directory", services_->config.analyzer.model_dir.string()},
        {"Device", services_->config.analyzer.device},
        {"DataType", services_->config.analyzer.dtype}}},
      {"Queue", scheduler_->status()},
      {"Configuration", services_->config.to_json()}};
  if (!model.error().empty()) {
    j["Model"]["Error"] = model.error();
    j["Error"] = model.error();
  }
  if (!build_note_.empty()) j["Build"] = build_note_;
  return {200, j};
}

RestAnswer RestApi::study(const std::vector<std::string>& groups, const std::string& /*body*/) const {
  const std::string& id = groups.at(0);
  const auto& records = services_->records;
  auto study_id = records.resolve_study(id);
  if (!study_id) throw PluginError("unknown study " + id, 404);
  // Whether a run waits or works, asked before the records are read: a run writes its summary
  // more than once (analysed, then forwarded) and leaves the queue after its last write, so a
  // study found out of the queue here has its final record below. Asked after, a run ending
  // meanwhile would show as finished with a summary of before its forwarding.
  const bool queued = services_->queue->contains(*study_id);
  auto record = records.read(*study_id);
  auto inventory = records.inventory(*study_id);
  if (!record || !inventory) throw PluginError("unknown study " + id, 404);
  const auto& summary = record->summary.is_object() ? record->summary : nlohmann::json::object();
  nlohmann::json result_series = nlohmann::json::array();
  for (const auto& s : inventory->series)
    if (s.result) {
      // The run that stored it (0: a SEG of /unibiomed/ask), so that a client picks the newest.
      const auto run = s.instances.empty() ? std::nullopt : records.result_run(s.instances.front());
      result_series.push_back({{"ID", s.id},
                               {"SeriesInstanceUID", s.series_instance_uid},
                               {"Modality", s.modality},
                               {"SeriesDescription", s.description},
                               {"Instances", s.instances.size()},
                               {"Run", run ? nlohmann::json(*run) : nlohmann::json(nullptr)}});
    }
  std::string job = record->run.job;
  if (auto live = scheduler_->job_of(*study_id)) job = *live;
  std::string state = to_string(record->state);
  // A shared queue's waiting entry is the pending state (the records are written by the node
  // that claims it).
  if (queued && services_->queue->shared() && record->state != StudyState::Running) state = "pending";
  nlohmann::json j = {{"ID", *study_id},
                      {"StudyInstanceUID", inventory->study_instance_uid},
                      {"State", state},
                      {"Queued", queued},
                      {"Run", record->run.run},
                      {"Attempt", record->run.attempt},
                      {"Mode", record->run.mode},
                      {"Request", record->run.request},
                      {"Job", job},
                      {"Updated", record->run.updated},
                      {"Error", record->error.empty() ? nlohmann::json(nullptr) : nlohmann::json(record->error)},
                      {"SourceInstances", inventory->source_instance_count()},
                      {"Findings", summary.value("Findings", nlohmann::json::array())},
                      {"Answers", summary.value("Answers", nlohmann::json::array())},
                      {"Series", summary.value("Series", nlohmann::json::array())},
                      {"Results", summary.value("Results", nlohmann::json::array())},
                      {"Forward", summary.value("Forward", nlohmann::json(nullptr))},
                      {"ResultSeries", result_series},
                      {"Summary", record->summary}};
  if (services_->model.state() != ModelHost::State::Ready) j["ModelError"] = services_->model.error();
  return {200, j};
}

RestAnswer RestApi::analyze(const std::vector<std::string>& groups, const std::string& body) const {
  return queue_request(groups.at(0), body, "analyze");
}

RestAnswer RestApi::forward(const std::vector<std::string>& groups, const std::string& body) const {
  return queue_request(groups.at(0), body, "forward");
}

RestAnswer RestApi::queue_request(const std::string& id, const std::string& body, const std::string& mode) const {
  auto study_id = services_->records.resolve_study(id);
  if (!study_id) throw PluginError("unknown study " + id, 404);
  const nlohmann::json request = parse_body(body);
  if (mode == "forward" && !request.is_null() && !(request.is_object() && request.empty()))
    throw PluginError("POST .../forward takes no body", 400);
  if (mode == "analyze" && services_->model.state() == ModelHost::State::Failed)
    throw PluginError("the model is not available: " + services_->model.error(), 503);
  const auto before = services_->records.read(*study_id);
  const QueueEntry entry = scheduler_->request(*study_id, mode == "forward" ? nlohmann::json(nullptr) : request, mode);
  nlohmann::json j = {{"ID", *study_id}, {"Run", entry.run}, {"Mode", entry.mode}, {"State", "pending"},
                      {"Path", path_of(&RestApi::study, *study_id)}};
  // A run that had not started yet takes this request instead of the one it waited with: say so.
  if (mode == "analyze" && before && before->state == StudyState::Pending && before->run.run == entry.run)
    j["Replaces"] = {{"Run", entry.run}, {"Request", before->run.request}};
  if (services_->model.state() != ModelHost::State::Ready) j["ModelError"] = services_->model.error();
  return {200, j};
}

RestAnswer RestApi::ask(const std::vector<std::string>& /*groups*/, const std::string& body) const {
  const nlohmann::json request = parse_body(body);
  if (!request.is_object())
    throw PluginError("the request body must be a JSON object with \"Instance\" and \"Question\"", 400);
  for (const auto& [key, value] : request.items())
    if (key != "Instance" && key != "Frame" && key != "Question" && key != "Box" && key != "Store")
      throw PluginError("unknown field \"" + key + "\" (known: Instance, Frame, Question, Box, Store)", 400);
  if (!request.contains("Instance") || !request["Instance"].is_string())
    throw PluginError("\"Instance\" (an Orthanc instance id or a SOPInstanceUID) is required", 400);
  int frame = 1;
  if (request.contains("Frame")) {
    if (!request["Frame"].is_number_integer() || request["Frame"].get<long>() < 1)
      throw PluginError("\"Frame\" must be an integer >= 1 (1-based frame number)", 400);
    frame = request["Frame"].get<int>();
  }
  bool store = true;
  if (request.contains("Store")) {
    if (!request["Store"].is_boolean()) throw PluginError("\"Store\" must be true or false", 400);
    store = request["Store"].get<bool>();
  }
  if (!request.contains("Question") || !request["Question"].is_string() ||
      request["Question"].get<std::string>().empty())
    throw PluginError("\"Question\" (a non-empty string: what to ask about the image) is required", 400);
  pipeline::Question question;
  question.text = request["Question"].get<std::string>();
  if (question.text.size() > kMaxQuestionBytes)
    throw PluginError("\"Question\" has " + std::to_string(question.text.size()) + " bytes; a question is at most " +
                          std::to_string(kMaxQuestionBytes) + " (the model's context holds the image too)",
                      400);
  if (request.contains("Box") && !request["Box"].is_null()) question.box = box_from_json(request["Box"], "Box");

  // The instance: an Orthanc id, or a SOPInstanceUID looked up.
  const std::string wanted = request["Instance"].get<std::string>();
  const auto& client = services_->client;
  std::string instance_id;
  if (is_orthanc_id(wanted)) {
    instance_id = wanted;
  } else if (is_dicom_uid(wanted)) {
    std::vector<std::string> found;
    for (const auto& r : client.post_bytes("/tools/lookup", wanted))
      if (r.value("Type", std::string()) == "Instance") found.push_back(r.value("ID", std::string()));
    if (found.size() > 1)
      throw PluginError("SOPInstanceUID " + wanted + " names " + std::to_string(found.size()) +
                            " Orthanc instances (" + join(found) + "); give \"Instance\" as one of these ids",
                        409);
    if (!found.empty()) instance_id = found.front();
  } else {
    throw PluginError("\"Instance\" is neither an Orthanc instance id nor a SOPInstanceUID: \"" + wanted + "\"", 400);
  }
  auto info = instance_id.empty() ? std::nullopt : client.find_json("/instances/" + instance_id);
  if (!info) throw PluginError("unknown instance " + wanted, 404);
  const auto tags = info->value("MainDicomTags", nlohmann::json::object());
  // A SEG, an SR, a document: no image to ask about (a request error, not the node's).
  {
    const std::string sop_class = client.find_text("/instances/" + instance_id + "/metadata/SopClassUid").value_or("");
    const auto series = client.find_json("/instances/" + instance_id + "/series");
    const std::string modality =
        series ? series->value("MainDicomTags", nlohmann::json::object()).value("Modality", std::string()) : "";
    if (auto never = dicom::classify_without_pixels(sop_class, modality))
      throw PluginError("instance " + instance_id + " is no image to ask about: " + never->reason, 400);
  }
  const std::string sop_uid = tags.value("SOPInstanceUID", std::string());
  if (tags.contains("NumberOfFrames")) {
    const std::string frames = tags["NumberOfFrames"].is_string() ? tags["NumberOfFrames"].get<std::string>() : "1";
    if (frame > std::atoi(frames.c_str()) && std::atoi(frames.c_str()) > 0)
      throw PluginError("instance " + instance_id + " has " + frames + " frames; \"Frame\" " + std::to_string(frame) +
                            " does not exist",
                        400);
  } else if (frame != 1) {
    throw PluginError("instance " + instance_id + " has one frame; \"Frame\" must be 1", 400);
  }

  if (question.box) {
    const auto size = image_size(client, instance_id);
    if (!size)
      throw PluginError("\"Box\" given, but instance " + instance_id + " has no Rows and Columns (not an image)",
                        400);
    check_box(*question.box, *size, "Box", "instance " + instance_id);
  }

  pipeline::InstanceInput input;
  input.id = instance_id;
  const std::string bytes = client.get_bytes("/instances/" + instance_id + "/file");
  input.bytes.assign(bytes.begin(), bytes.end());
  // Same image, frame and question: same UIDs, so asking twice stores one SEG.
  std::string box_text;
  if (question.box)
    for (int v : *question.box) box_text += "," + std::to_string(v);
  const std::string seed =
      "ask/" + sop_uid + "/" + std::to_string(frame) + "/" + stable_hash(question.text + "|" + box_text);
  // Not on this thread: Orthanc's HTTP threads (civetweb) have small stacks (100 KB in Debian's
  // build), which libtorch's kernels overflow now and then (a crash of Orthanc, seen in the
  // tests). A thread of the default size runs the model; this one waits (exceptions pass through).
  const auto answer = std::async(std::launch::async, [&] {
                        return services_->model.use(
                            [&](pipeline::Analyzer& analyzer) { return analyzer.ask(input, frame, question, seed); });
                      }).get();

  nlohmann::json findings = nlohmann::json::array();
  for (const auto& f : answer.findings) findings.push_back(to_json(f));
  nlohmann::json j = {{"Instance", instance_id}, {"Frame", frame},       {"Question", question.text},
                      {"Text", answer.text},     {"Findings", findings}, {"Segmentation", nullptr},
                      {"Notes", answer.notes}};
  if (answer.seg) {
    if (store) {
      const auto study = client.get_json("/instances/" + instance_id + "/study");
      const std::string study_id = study.value("ID", std::string());
      const std::string study_uid =
          study.value("MainDicomTags", nlohmann::json::object()).value("StudyInstanceUID", std::string());
      j["Segmentation"] = services_->results.store(*answer.seg, study_id, study_uid, 0).to_json();
    } else {
      j["Segmentation"] = {{"Kind", answer.seg->kind},
                           {"SOPInstanceUID", answer.seg->sop_instance_uid},
                           {"SeriesInstanceUID", answer.seg->series_instance_uid},
                           {"Status", "NotStored"}};
    }
  }
  return {200, j};
}

}  // namespace unibiomed::orthanc
