#include "server/reflection_v1.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"

namespace hopfield::server {
namespace {

namespace rv1 = grpc::reflection::v1;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

void SetError(grpc::StatusCode code, const std::string& message,
              rv1::ServerReflectionResponse* response) {
  rv1::ErrorResponse* error = response->mutable_error_response();
  error->set_error_code(static_cast<int32_t>(code));
  error->set_error_message(message);
}

// Adds `file`, then those of its dependencies the stream has not sent yet.
void AddFile(const FileDescriptor* file, std::vector<std::string>* sent_files,
             rv1::FileDescriptorResponse* out) {
  if (std::find(sent_files->begin(), sent_files->end(), file->name()) !=
      sent_files->end()) {
    return;
  }
  sent_files->push_back(file->name());
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  out->add_file_descriptor_proto(proto.SerializeAsString());
  for (int i = 0; i < file->dependency_count(); ++i) {
    AddFile(file->dependency(i), sent_files, out);
  }
}

// Answers with `file` or, when it is null, NOT_FOUND naming `missing`. The
// file itself is always sent, even if sent before on this stream (the client
// asked for it); dependencies only once.
void AnswerWithFile(const FileDescriptor* file, const std::string& missing,
                    std::vector<std::string>* sent_files,
                    rv1::ServerReflectionResponse* response) {
  if (file == nullptr) {
    SetError(grpc::StatusCode::NOT_FOUND, missing, response);
    return;
  }
  sent_files->erase(
      std::remove(sent_files->begin(), sent_files->end(), file->name()),
      sent_files->end());
  AddFile(file, sent_files, response->mutable_file_descriptor_response());
}

class Reactor final
    : public grpc::ServerBidiReactor<rv1::ServerReflectionRequest,
                                     rv1::ServerReflectionResponse> {
 public:
  explicit Reactor(const ReflectionV1Service* service) : service_(service) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    service_->Answer(request_, &sent_files_, &response_);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  const ReflectionV1Service* const service_;
  rv1::ServerReflectionRequest request_;
  rv1::ServerReflectionResponse response_;
  std::vector<std::string> sent_files_;
};

}  // namespace

ReflectionV1Service::ReflectionV1Service(std::vector<std::string> services)
    : services_(std::move(services)) {}

grpc::ServerBidiReactor<rv1::ServerReflectionRequest,
                        rv1::ServerReflectionResponse>*
ReflectionV1Service::ServerReflectionInfo(
    grpc::CallbackServerContext* /*context*/) {
  return new Reactor(this);
}

void ReflectionV1Service::Answer(
    const rv1::ServerReflectionRequest& request,
    std::vector<std::string>* sent_files,
    rv1::ServerReflectionResponse* response) const {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  response->set_valid_host(request.host());
  *response->mutable_original_request() = request;
  switch (request.message_request_case()) {
    case rv1::ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) {
        response->mutable_list_services_response()->add_service()->set_name(
            name);
      }
      return;
    case rv1::ServerReflectionRequest::kFileByFilename:
      AnswerWithFile(
          pool->FindFileByName(request.file_by_filename()),
          absl::StrCat("file not found: ", request.file_by_filename()),
          sent_files, response);
      return;
    case rv1::ServerReflectionRequest::kFileContainingSymbol:
      AnswerWithFile(
          pool->FindFileContainingSymbol(request.file_containing_symbol()),
          absl::StrCat("symbol not found: ", request.file_containing_symbol()),
          sent_files, response);
      return;
    case rv1::ServerReflectionRequest::kFileContainingExtension: {
      const auto& ask = request.file_containing_extension();
      const auto* type = pool->FindMessageTypeByName(ask.containing_type());
      const auto* extension =
          type == nullptr
              ? nullptr
              : pool->FindExtensionByNumber(type, ask.extension_number());
      AnswerWithFile(
          extension == nullptr ? nullptr : extension->file(),
          absl::StrCat("extension not found: ", ask.containing_type(), " #",
                       ask.extension_number()),
          sent_files, response);
      return;
    }
    case rv1::ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const auto* type =
          pool->FindMessageTypeByName(request.all_extension_numbers_of_type());
      if (type == nullptr) {
        SetError(grpc::StatusCode::NOT_FOUND,
                 absl::StrCat("type not found: ",
                              request.all_extension_numbers_of_type()),
                 response);
        return;
      }
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      rv1::ExtensionNumberResponse* out =
          response->mutable_all_extension_numbers_response();
      out->set_base_type_name(type->full_name());
      for (const auto* extension : extensions) {
        out->add_extension_number(extension->number());
      }
      return;
    }
    case rv1::ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
      SetError(grpc::StatusCode::INVALID_ARGUMENT,
               "message_request: expected one of file_by_filename, "
               "file_containing_symbol, file_containing_extension, "
               "all_extension_numbers_of_type, list_services",
               response);
      return;
  }
}

}  // namespace hopfield::server
