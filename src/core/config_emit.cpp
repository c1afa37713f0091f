// Config -> resolved YAML text (every key, defaults filled): logged at start, stored in checkpoints.
#include <yaml-cpp/yaml.h>

#include "core/config.h"
#include "core/config_fields.h"

namespace moe {
namespace {

class EmitVisitor {
 public:
  explicit EmitVisitor(YAML::Emitter& out) : out_(out) {}
  void begin(const char* key) { out_ << YAML::Key << key << YAML::Value << YAML::BeginMap; }
  void end() { out_ << YAML::EndMap; }
  template <class T>
  void field(const char* key, const T& value) {
    out_ << YAML::Key << key << YAML::Value << value;
  }
  void field(const char* key, const std::vector<int>& value) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << value;
  }

 private:
  YAML::Emitter& out_;
};

}  // namespace

std::string config_to_yaml(const Config& cfg) {
  YAML::Emitter out;
  out.SetDoublePrecision(17);
  out << YAML::BeginMap;
  EmitVisitor visitor(out);
  visit_config_fields(const_cast<Config&>(cfg), visitor);  // the visitor only reads
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace moe
