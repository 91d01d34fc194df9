// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/toolkit_logging.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/oflog/oflog.h>
#include <gdcmTrace.h>

namespace unibiomed::dicom {

void silence_toolkit_logs() {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  gdcm::Trace::WarningOff();
  gdcm::Trace::ErrorOff();
  gdcm::Trace::DebugOff();
}

}  // namespace unibiomed::dicom
