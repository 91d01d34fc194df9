# SPDX-License-Identifier: GPL-3.0-or-later
# cmake -DBENCH=path/to/bench_x [-DCHECK_HELP=OFF] -P check_bench_arguments.cmake
# --help: exit 0 with "usage:" on stdout; an unknown argument: exit 2 with "usage:" on stderr.
# A bench whose --help offers --device (the model benches, bench_device.h): a device that does not
# exist is refused the same way (exit 2, before any model is loaded).
if(NOT BENCH)
  message(FATAL_ERROR "BENCH not set")
endif()
get_filename_component(name "${BENCH}" NAME)

if(NOT DEFINED CHECK_HELP OR CHECK_HELP)
  execute_process(COMMAND "${BENCH}" --help RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 30)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} --help: exit ${rc}, expected 0\n${out}${err}")
  endif()
  if(NOT out MATCHES "usage: ${name}")
    message(FATAL_ERROR "${name} --help: no 'usage: ${name}' on stdout\n${out}")
  endif()
  if(out MATCHES "--device cpu\\|cuda")
    execute_process(COMMAND "${BENCH}" --device tpu:7 RESULT_VARIABLE rc OUTPUT_VARIABLE dout ERROR_VARIABLE derr
                    TIMEOUT 30)
    if(NOT rc EQUAL 2)
      message(FATAL_ERROR "${name} --device tpu:7: exit ${rc}, expected 2\n${dout}${derr}")
    endif()
    if(NOT derr MATCHES "bad value 'tpu:7' for --device")
      message(FATAL_ERROR "${name} --device tpu:7: no 'bad value' message on stderr\n${derr}")
    endif()
    set(device_checked " (--device checked)")
  endif()
endif()

execute_process(COMMAND "${BENCH}" --no-such-option RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 30)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "${name} --no-such-option: exit ${rc}, expected 2\n${out}${err}")
endif()
if(NOT err MATCHES "usage: ${name}")
  message(FATAL_ERROR "${name} --no-such-option: no 'usage: ${name}' on stderr\n${err}")
endif()
message(STATUS "${name}: argument handling as expected${device_checked}")
