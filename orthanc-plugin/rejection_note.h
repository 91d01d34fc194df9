// The IHE IOCM rejection note of a replaced analysis (UniBiomed.SupersededResults "reject"):
// the results of the replaced run listed in a Key Object Selection "Rejected for Quality Reasons"
// (sr-writer/rejection_note.h) that the plugin stores in the study and forwards with the new
// results.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orthanc-plugin/orthanc_client.h"
#include "pipeline/analyzer.h"

namespace unibiomed::orthanc {

// The Series Number of run `run`'s first result series (pipeline AnalysisRequest::
// first_series_number): 9001 for run 1, 9101 for run 2, ... so that the runs a study keeps are
// listed apart and in order; a run's rejection note is the number before its first (9100...).
inline int first_result_series_number(int run) {
  return 9001 + 100 * (std::max(run, 1) - 1);
}

struct RejectionNote {
  pipeline::ResultObject object;  // kind "KO"
  std::size_t rejected = 0;       // instances it lists
  // Orthanc ids of objects the note cannot list: no UIDs recorded for them (summaries of older
  // versions) and no longer in Orthanc to read them from.
  std::vector<std::string> unlisted;
};

// `retire`: the objects to withdraw, each {"ID", "SOPClassUID", "SOPInstanceUID",
// "SeriesInstanceUID"} as the summary recorded them (an entry with only the ID is read from
// Orthanc). They are listed whether or not they are still in this Orthanc: forwarded copies may
// be in the archive. `report_id`: the replaced SR, whose patient and study attributes the note
// takes. `description`: the note's Key Object Description. `run`: the run that replaces them;
// `seed` its UID seed, so that a resumed run writes the same note. Throws PluginError naming the
// cause.
RejectionNote write_rejection_note(const OrthancClient& client, const std::string& study_uid,
                                   const nlohmann::json& retire, const std::string& report_id,
                                   const std::string& description, int run, const std::string& seed,
                                   const std::string& node_name);

}  // namespace unibiomed::orthanc
