// The IHE IOCM rejection note of a replaced analysis (UniBiomed.SupersededResults "reject"):
// the results of the replaced run listed in a Key Object Selection "Rejected for Quality Reasons"
// (sr-writer/rejection_note.h) that the plugin stores in the study and forwards with the new
// results.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orthanc-plugin/orthanc_client.h"
#include "pipeline/analyzer.h"

namespace unibiomed::orthanc {

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
