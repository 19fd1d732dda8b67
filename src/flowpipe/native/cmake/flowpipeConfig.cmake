# CMake package of the flowpipe native stage SDK: find_package(flowpipe).
#
# Targets:
#   flowpipe::flowpipe_runtime  C++ stages written for flow-pipe's headers (flowpipe/stage.h,
#                               plugin.h, payload.h, configurable_stage.h, FP_LOG_*). Its
#                               support source is compiled into the plugin itself, so there is
#                               no runtime library to ship next to the plugin.
#   flowpipe::stage_abi         headers only, for stages written against the C ABI
#                               (flowpipe/stage_abi.h).
#
# protobuf: ConfigurableStage always has configure(std::string_view json). flow-pipe's
# configure(const google::protobuf::Struct&) is added on request, with
#   find_package(flowpipe REQUIRED COMPONENTS protobuf)   or   cmake -DFLOWPIPE_WITH_PROTOBUF=ON
# Opt-in rather than "whenever protobuf is installed": otherwise the same plugin would need
# libprotobuf at run time or not depending on the machine that built it.

get_filename_component(_flowpipe_native_dir "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(flowpipe_INCLUDE_DIRS "${_flowpipe_native_dir}/include")

if(NOT TARGET flowpipe::stage_abi)
  add_library(flowpipe::stage_abi INTERFACE IMPORTED)
  set_target_properties(flowpipe::stage_abi PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${flowpipe_INCLUDE_DIRS}")

  add_library(flowpipe::flowpipe_runtime INTERFACE IMPORTED)
  set_target_properties(flowpipe::flowpipe_runtime PROPERTIES
    INTERFACE_SOURCES "${_flowpipe_native_dir}/sdk/flowpipe_runtime.cc"
    INTERFACE_LINK_LIBRARIES flowpipe::stage_abi
    INTERFACE_COMPILE_FEATURES cxx_std_17)

  if(FLOWPIPE_WITH_PROTOBUF OR "protobuf" IN_LIST flowpipe_FIND_COMPONENTS)
    find_package(Protobuf REQUIRED)
    set_property(TARGET flowpipe::flowpipe_runtime APPEND PROPERTY
      INTERFACE_LINK_LIBRARIES protobuf::libprotobuf)
    set_property(TARGET flowpipe::flowpipe_runtime APPEND PROPERTY
      INTERFACE_COMPILE_DEFINITIONS FLOWPIPE_WITH_PROTOBUF=1)
  endif()
endif()
set(flowpipe_protobuf_FOUND TRUE)

unset(_flowpipe_native_dir)
