// The IHE IOCM rejection note of a replaced analysis (UniBiomed.SupersededResults "reject"):
// the results of the replaced run, read back from Orthanc, listed in a Key Object Selection
// "Rejected for Quality Reasons" (sr-writer/rejection_note.h) that the plugin stores in the study
// and forwards with the new results.
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
  std::vector<std::string> gone;  // Orthanc ids of the replaced run no longer in Orthanc (not listed)
};

// `superseded`: the summary's Supersedes (Run, ID of its SR, Objects). `run`: the run that
// replaces it; `seed` its UID seed, so that a resumed run writes the same note. Throws
// PluginError naming the cause (nothing of the replaced run left in Orthanc, an object of another
// study, an unreadable SR).
RejectionNote write_rejection_note(const OrthancClient& client, const nlohmann::json& superseded, int run,
                                   const std::string& seed, const std::string& node_name);

}  // namespace unibiomed::orthanc
