// Grouping instances into series.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/series.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

namespace unibiomed::dicom {

size_t Series::frame_count() const {
  size_t n = 0;
  for (const auto& i : instances) n += i.frames().size();
  return n;
}

bool Series::has_images() const {
  if (instances.empty()) return false;
  for (const auto& i : instances)
    if (!i.image_problem().empty()) return false;
  return true;
}

std::vector<std::filesystem::path> list_input_files(const std::vector<std::filesystem::path>& paths) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      for (fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end; it != end;
           it.increment(ec)) {
        if (ec) break;
        if (!it->is_regular_file(ec)) continue;
        const std::string name = it->path().filename().string();
        if (name == "DICOMDIR" || (!name.empty() && name[0] == '.')) continue;
        // Companion files of an export (manifests, previews) are not read from folders;
        // named on the command line, every file is read.
        std::string ext = it->path().extension().string();
        for (auto& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
        if (ext == ".json" || ext == ".txt" || ext == ".md" || ext == ".png" || ext == ".jpg" || ext == ".jpeg" ||
            ext == ".csv" || ext == ".xml" || ext == ".html" || ext == ".pdf")
          continue;
        found.push_back(it->path());
      }
      if (ec) throw DicomError(p.string() + ": cannot list folder (" + ec.message() + ")");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      files.push_back(p);
    } else {
      throw DicomError(p.string() + ": no such file or folder");
    }
  }
  return files;
}

SeriesCollection read_series(const std::vector<std::filesystem::path>& paths) {
  std::vector<Instance> instances;
  std::vector<FileProblem> problems;
  for (const auto& file : list_input_files(paths)) {
    try {
      instances.push_back(Instance::read_file(file));
    } catch (const DicomError& e) {
      problems.push_back({file.string(), e.what()});
    }
  }
  SeriesCollection collection = group_into_series(std::move(instances));
  collection.problems.insert(collection.problems.begin(), problems.begin(), problems.end());
  return collection;
}

SeriesCollection read_series(const std::vector<InstanceBytes>& inputs) {
  std::vector<Instance> instances;
  std::vector<FileProblem> problems;
  for (const auto& input : inputs) {
    try {
      instances.push_back(Instance::read_bytes(input.bytes, input.source));
    } catch (const DicomError& e) {
      problems.push_back({input.source, e.what()});
    }
  }
  SeriesCollection collection = group_into_series(std::move(instances));
  collection.problems.insert(collection.problems.begin(), problems.begin(), problems.end());
  return collection;
}

SeriesCollection group_into_series(std::vector<Instance> instances) {
  SeriesCollection collection;
  std::map<std::string, Series> by_uid;
  std::set<std::string> seen_sop_instances;
  for (auto& instance : instances) {
    if (!seen_sop_instances.insert(instance.sop_instance_uid()).second) {
      collection.problems.push_back(
          {instance.source(), instance.source() + ": SOP Instance UID " + instance.sop_instance_uid() +
                                  " was already read from another file; this copy is ignored"});
      continue;
    }
    std::string key = instance.series().series_instance_uid;
    if (key.empty()) {
      // The instances of a study without a series UID are put together, each named, in one
      // series that has none: results cannot reference it, and it is reported once.
      key = "(no SeriesInstanceUID) " + instance.study().study_instance_uid;
      by_uid[key].problems.push_back(instance.source() + ": missing SeriesInstanceUID (0020,000E)");
    }
    Series& series = by_uid[key];
    if (series.instances.empty()) {
      series.identity = instance.series();
      series.study = instance.study();
    } else if (instance.study().study_instance_uid != series.study.study_instance_uid) {
      series.problems.push_back(instance.source() + ": StudyInstanceUID (0020,000D) " +
                                instance.study().study_instance_uid + " differs from the series' " +
                                series.study.study_instance_uid + " (same SeriesInstanceUID in two studies)");
    }
    series.instances.push_back(std::move(instance));
  }
  for (auto& [uid, series] : by_uid) {
    std::stable_sort(series.instances.begin(), series.instances.end(), [](const Instance& a, const Instance& b) {
      if (a.instance_number() != b.instance_number()) return a.instance_number() < b.instance_number();
      return a.sop_instance_uid() < b.sop_instance_uid();
    });
    // Classify from the first image the model reads: a series may start with a localizer (CT, MR)
    // or hold a slide's label image, and such an image does not decide what the series is.
    const auto is_image = [](const Instance& i) { return i.image_problem().empty(); };
    const Instance* representative = nullptr;
    for (const auto& i : series.instances) {
      if (!is_image(i)) continue;
      ModalityClass c = classify_modality(i);
      if (!representative || c.modality) {
        representative = &i;  // the first image, unless a later one is readable
        series.modality = std::move(c);
      }
      if (series.modality.modality) break;
    }
    if (!representative) {
      representative = &series.instances.front();
      series.modality = classify_modality(*representative);
    }
    std::set<std::string> modalities;
    for (const auto& i : series.instances) modalities.insert(i.series().modality);
    if (series.modality.modality) {
      // Instances the model cannot read (a truncated file, an unsupported bit layout, a localizer
      // among the slices) are left out of a series that has images, so that the others are
      // analysed; a series of nothing but undecodable instances keeps them, and fails with the
      // first one's reason.
      const bool has_image = is_image(*representative);
      std::vector<Instance> kept;
      for (auto& i : series.instances) {
        std::string left_out;
        if (std::string problem = i.image_problem(); !problem.empty()) {
          if (!has_image) {
            series.problems.push_back(problem);
            kept.push_back(std::move(i));
            continue;
          }
          left_out = problem;
        } else if (&i != representative) {
          if (ModalityClass c = classify_modality(i); !c.modality) left_out = i.source() + ": " + c.reason;
        }
        if (left_out.empty()) {
          if (std::string note = i.frame_count_note(); !note.empty()) series.problems.push_back(note);
          kept.push_back(std::move(i));
        } else
          series.problems.push_back(left_out + " (left out; the series' other instances are read)");
      }
      series.instances = std::move(kept);
    }
    if (modalities.size() > 1) {
      std::string list;
      for (const auto& m : modalities) list += (list.empty() ? "" : ", ") + m;
      series.problems.push_back("the series mixes Modality (0008,0060) values " + list);
    }
    collection.series.push_back(std::move(series));
  }
  std::stable_sort(collection.series.begin(), collection.series.end(), [](const Series& a, const Series& b) {
    if (a.study.study_instance_uid != b.study.study_instance_uid)
      return a.study.study_instance_uid < b.study.study_instance_uid;
    if (a.identity.series_number != b.identity.series_number)
      return a.identity.series_number < b.identity.series_number;
    return a.identity.series_instance_uid < b.identity.series_instance_uid;
  });
  return collection;
}

}  // namespace unibiomed::dicom
