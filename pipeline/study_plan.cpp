// Planning questions per series and choosing the slices.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/study_plan.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <iomanip>
#include <sstream>

namespace unibiomed::pipeline {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

// The target describing the masks of explicit questions: "lesion" when the rules define it,
// else the first lesion-kind target, else any.
const config::Target* question_target(const config::TaskRules& rules, const config::Rule* rule) {
  if (rule)
    for (const auto& t : rule->tasks)
      if (t.family != config::TaskFamily::Segmentation && !t.targets.empty()) return &rules.target(t.targets.front());
  auto it = rules.targets().find("lesion");
  if (it != rules.targets().end()) return &it->second;
  for (const auto& [k, t] : rules.targets())
    if (t.kind == config::Target::Kind::Lesion) return &t;
  return rules.targets().empty() ? nullptr : &rules.targets().begin()->second;
}

}  // namespace

void check_requested_tasks(const config::TaskRules& rules, const AnalysisRequest& request) {
  std::set<std::string> known;
  for (const auto& r : rules.rules())
    for (const auto& t : r.tasks) known.insert(t.name);
  for (const auto& name : request.tasks)
    if (!known.count(name))
      throw PipelineError("unknown task '" + name + "' (tasks of the rules in " + rules.source() + ": " +
                          join(std::vector<std::string>(known.begin(), known.end())) + ")");
  for (const auto& q : request.questions)
    if (q.text.empty() && !q.box) throw PipelineError("an explicit question without text (and without a box)");
}

std::string default_window(const config::Rule* rule, const std::string& modality) {
  if (modality != "CT") return "";
  if (rule)
    for (const auto& t : rule->tasks)
      if (!t.window.empty()) return t.window;
  return "abdomen";
}

SeriesPlan plan_series(const config::TaskRules& rules, const config::SeriesFacts& series,
                       const std::string& series_instance_uid, const AnalysisRequest& request,
                       const CheckpointTargets* trained) {
  SeriesPlan plan;
  plan.rule = rules.select(series);
  const bool is_ct = series.modality == "CT";
  if (request.rules && plan.rule) {
    std::vector<std::string> available;
    for (const auto& task : plan.rule->tasks) {
      available.push_back(task.name);
      const bool wanted = request.tasks.empty()
                              ? task.run_by_default
                              : std::find(request.tasks.begin(), request.tasks.end(), task.name) != request.tasks.end();
      if (!wanted) continue;
      const std::string window = is_ct ? task.window : "";
      if (task.family == config::TaskFamily::Segmentation) {
        // Several targets are separate questions (turns), MODEL.md.
        for (const auto& key : task.targets) {
          const config::Target& target = rules.target(key);
          plan.questions.push_back({task.name, task.family, &target, rules.prompt_for(*plan.rule, task, &target), window, {}});
        }
      } else {
        const config::Target& target = rules.target(task.targets.front());
        plan.questions.push_back({task.name, task.family, &target, rules.prompt_for(*plan.rule, task, &target), window, {}});
      }
    }
    if (plan.questions.empty() && !request.tasks.empty())
      plan.skip_reason = "none of the requested tasks (" + join(request.tasks) + ") is in rule " + plan.rule->name +
                         " for this " + series.modality + " series (it has " + join(available) + ")";
  }
  const std::string window = default_window(plan.rule, series.modality);
  std::map<size_t, std::pair<size_t, int>> repeated;  // kept question -> (its note in plan.notes, times asked)
  for (const auto& q : request.questions) {
    if (!q.series_instance_uid.empty() && q.series_instance_uid != series_instance_uid) continue;
    PlannedQuestion p;
    p.task = "question";
    p.family = q.box ? config::TaskFamily::RegionDiagnosis : config::TaskFamily::Vqa;
    p.target = question_target(rules, plan.rule);
    p.prompt = q.text.empty() && q.box ? rules.prompt_template(config::TaskFamily::RegionDiagnosis) : q.text;
    p.window = window;
    p.box = q.box;
    // A question that names a target of the rules (a task's prompt word for word, or "Please
    // segment liver in CT."): coded as that target, in its task's window, as `ask` codes it;
    // a segmentation request's masks are named by the target, not by the model's phrase.
    const AskMatch match = match_question(rules, plan.rule, p.prompt);
    if (match.target) {
      p.target = match.target;
      if (is_ct && !match.window.empty()) p.window = match.window;
      if (match.segmentation && !q.box) p.family = config::TaskFamily::Segmentation;
    }
    if (p.prompt.empty()) throw PipelineError("an explicit question without text (and without a box)");
    // The same question twice (e.g. a rule task's prompt asked again) is asked once: the
    // model's answer would be the same, and its findings would be reported twice.
    const auto same = std::find_if(plan.questions.begin(), plan.questions.end(), [&](const PlannedQuestion& o) {
      return o.prompt == p.prompt && o.box == p.box && o.window == p.window;
    });
    if (same != plan.questions.end()) {
      // One note per kept question, however often it is repeated: "(asked 3 times)" past two.
      const size_t kept = static_cast<size_t>(same - plan.questions.begin());
      const std::string by = same->task == "question" ? "an earlier question" : "task " + same->task;
      const std::string note = "question \"" + p.prompt + "\" asked once: it is already asked by " + by;
      auto [it, first_repeat] = repeated.try_emplace(kept, plan.notes.size(), 1);
      auto& [index, times] = it->second;
      if (first_repeat) plan.notes.push_back(note);
      if (++times > 2) plan.notes[index] = note + " (asked " + std::to_string(times) + " times)";
      continue;
    }
    plan.questions.push_back(std::move(p));
  }
  if (plan.questions.empty() && plan.skip_reason.empty()) {
    if (!request.rules)
      plan.skip_reason = "no explicit question for this series and the task rules are switched off";
    else if (!plan.rule)
      plan.skip_reason = "no task rule in " + rules.source() + " matches this " + series.modality + " series (body part '" +
                         series.body_part_examined + "', description '" + series.series_description + "')";
    else
      plan.skip_reason = "rule " + plan.rule->name + " runs no task by default";
  }
  if (trained) drop_untrained(plan, series.modality, *trained);
  return plan;
}

void drop_untrained(SeriesPlan& plan, const std::string& modality, const CheckpointTargets& trained) {
  std::vector<PlannedQuestion> kept;
  std::vector<std::string> untrained;
  for (auto& q : plan.questions) {
    // Explicit questions are the user's: asked whatever the checkpoint knows.
    if (q.task == "question" || !q.target || trained.knows(modality, q.target->key)) {
      kept.push_back(std::move(q));
      continue;
    }
    const std::string name = q.target->key + " (" + q.task + ")";
    if (std::find(untrained.begin(), untrained.end(), name) == untrained.end()) untrained.push_back(name);
  }
  plan.questions = std::move(kept);
  if (untrained.empty()) return;
  const std::string why =
      "not asked: " + join(untrained) + ": target not trained in this checkpoint (" + trained.source + ")";
  if (plan.questions.empty())
    plan.skip_reason = why;
  else
    plan.notes.push_back(why);
}

std::string modality_skip_reason(const dicom::Series& series) {
  if (series.modality.modality) return "";
  return series.modality.reason.empty() ? "not a modality the model reads" : series.modality.reason;
}

std::string unasked_reason(const config::TaskRules& rules, const CheckpointTargets* trained,
                           const dicom::Series& series, const AnalysisRequest& request) {
  if (std::string reason = modality_skip_reason(series); !reason.empty()) return reason;
  // A series without decodable images fails in the analysis, which says why.
  if (!series.has_images()) return "";
  const std::string modality = dicom::modality_name(*series.modality.modality);
  return plan_series(rules, {modality, series.identity.body_part_examined, series.identity.series_description},
                     series.identity.series_instance_uid, request, trained)
      .skip_reason;
}

SeriesScreen automatic_analysis_screen(const AnalyzerSettings& settings) {
  try {
    auto rules = std::make_shared<const config::TaskRules>(config::TaskRules::load_or_defaults(settings.task_rules));
    auto trained =
        std::make_shared<const std::optional<CheckpointTargets>>(read_checkpoint_targets(settings.model_dir));
    return [rules, trained](const dicom::Series& series) {
      return unasked_reason(*rules, trained->has_value() ? &**trained : nullptr, series, AnalysisRequest{});
    };
  } catch (const std::exception&) {
    return {};  // the model's loading names the broken file
  }
}

namespace {

// "every slice", "every 2nd slice", "every 11th slice"...
std::string every_nth(int n) {
  if (n == 1) return "every";
  const int tens = n % 100, ones = n % 10;
  const char* suffix = tens >= 11 && tens <= 13 ? "th" : ones == 1 ? "st" : ones == 2 ? "nd" : ones == 3 ? "rd" : "th";
  return "every " + std::to_string(n) + suffix;
}

}  // namespace

ViewSelection select_views(const std::vector<dicom::ViewRequest>& views,
                           const std::optional<config::SliceSelection>& slices, int max_views) {
  ViewSelection out;
  std::vector<std::string> notes;
  // Stack sizes, for the fractions.
  std::map<int, int> stack_size;
  for (const auto& v : views)
    if (v.stack_index >= 0) stack_size[v.stack_index] = std::max(stack_size[v.stack_index], v.slice_index + 1);
  std::vector<size_t> kept;
  for (size_t i = 0; i < views.size(); ++i) {
    const auto& v = views[i];
    if (slices && v.stack_index >= 0) {
      const int n = stack_size[v.stack_index];
      const int lo = static_cast<int>(std::floor(slices->from * n));
      const int hi = std::min(n, static_cast<int>(std::ceil(slices->to * n)));
      if (v.slice_index < lo || v.slice_index >= hi || (v.slice_index - lo) % slices->stride != 0) continue;
    }
    kept.push_back(i);
  }
  if (slices && kept.size() < views.size()) {
    std::ostringstream s;
    s << "the rule's slice selection (from " << slices->from << " to " << slices->to << " of each stack, "
      << every_nth(slices->stride) << " slice) keeps " << kept.size() << " of " << views.size() << " views";
    notes.push_back(s.str());
  }
  if (max_views > 0 && kept.size() > static_cast<size_t>(max_views)) {
    const size_t n = kept.size(), m = static_cast<size_t>(max_views);
    // The series' parts: a stack, a multi-frame instance (a cine), a single image, the regions
    // of a slide. Each keeps a share of the views by its size, and at least one view (two for a
    // sequence, so that it stays one), when there are no more parts than views allowed.
    std::map<std::string, std::vector<size_t>> parts_by_key;
    std::vector<std::vector<size_t>*> parts;  // in the order they first appear
    for (size_t index : kept) {
      const auto& v = views[index];
      const std::string key = v.slide_region       ? std::string("slide")
                              : v.stack_index >= 0 ? "stack " + std::to_string(v.stack_index)
                                                   : "instance " + std::to_string(v.instance_index);
      auto [it, inserted] = parts_by_key.try_emplace(key);
      if (inserted) parts.push_back(&it->second);
      it->second.push_back(index);
    }
    // `count` evenly spread over `from` (first and last kept; one alone: the middle one).
    auto spread = [](const std::vector<size_t>& from, size_t count, std::vector<size_t>& into) {
      const size_t size = from.size();
      for (size_t k = 0; k < count; ++k) {
        const size_t at =
            count == 1 ? size / 2 : static_cast<size_t>(std::llround(double(k) * double(size - 1) / double(count - 1)));
        if (into.empty() || into.back() != from[at]) into.push_back(from[at]);
      }
    };
    std::vector<size_t> strided;
    std::ostringstream s;
    if (parts.size() > m) {
      spread(kept, m, strided);
      s << "an even stride over all views keeps " << strided.size() << " of " << n << " views (one in "
        << std::setprecision(3) << double(n) / double(strided.size()) << ") to stay within max_slices_per_series "
        << max_views << "; the series' " << parts.size() << " parts (stacks, cines, images) do not all fit";
    } else {
      std::vector<size_t> share(parts.size());
      size_t floor_sum = 0;
      for (size_t p = 0; p < parts.size(); ++p) floor_sum += share[p] = std::min<size_t>(parts[p]->size(), 2);
      if (floor_sum > m)
        for (auto& q : share) q = 1;
      size_t given = 0, room = 0;
      for (size_t p = 0; p < parts.size(); ++p) {
        given += share[p];
        room += parts[p]->size() - share[p];
      }
      // The views left over, by each part's room (largest remainders first, then order).
      const size_t left = m - given;
      std::vector<std::pair<double, size_t>> remainders;
      size_t handed = 0;
      for (size_t p = 0; p < parts.size(); ++p) {
        const double exact = room ? double(left) * double(parts[p]->size() - share[p]) / double(room) : 0.0;
        const auto whole = static_cast<size_t>(std::floor(exact));
        share[p] += whole;
        handed += whole;
        remainders.emplace_back(-(exact - double(whole)), p);
      }
      std::stable_sort(remainders.begin(), remainders.end());
      for (size_t r = 0; handed < left && r < remainders.size(); ++r)
        if (share[remainders[r].second] < parts[remainders[r].second]->size()) {
          ++share[remainders[r].second];
          ++handed;
        }
      for (size_t p = 0; p < parts.size(); ++p) spread(*parts[p], share[p], strided);
      std::sort(strided.begin(), strided.end());
      s << "an even stride keeps " << strided.size() << " of " << n << " views (one in " << std::setprecision(3)
        << double(n) / double(strided.size()) << ") to stay within max_slices_per_series " << max_views;
      if (parts.size() > 1) {
        s << "; per part of the series, in its order:";
        for (size_t p = 0; p < parts.size(); ++p) s << (p ? "," : "") << " " << share[p] << " of " << parts[p]->size();
      }
    }
    notes.push_back(s.str());
    kept = std::move(strided);
  }
  out.selected = std::move(kept);
  for (size_t i = 0; i < notes.size(); ++i) out.note += (i ? "; " : "") + notes[i];
  return out;
}

}  // namespace unibiomed::pipeline
