// YAML -> typed Config. A strict reader: every key must be known, every value of the right type;
// errors name the file, the dotted key and the rule.
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "core/config.h"
#include "core/config_fields.h"
#include "core/error.h"

namespace moe {
namespace {

template <class T>
const char* type_name();
template <> const char* type_name<int>() { return "an integer"; }
template <> const char* type_name<int64_t>() { return "an integer"; }
template <> const char* type_name<double>() { return "a number"; }
template <> const char* type_name<bool>() { return "true or false"; }
template <> const char* type_name<std::string>() { return "a string"; }

class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {
    MOE_CHECK(!node_.IsDefined() || node_.IsNull() || node_.IsMap(),
              source_ << ": key '" << path_ << "' must be a mapping of keys to values");
  }

  template <class T>
  void get(const char* key, T& out) {
    known_.insert(key);
    if (!present()) return;
    YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return;
    std::string full = dotted(key);
    MOE_CHECK(v.IsScalar(), source_ << ": key '" << full << "' must be " << type_name<T>());
    try {
      out = v.as<T>();
    } catch (const YAML::Exception&) {
      MOE_THROW(source_ << ": key '" << full << "' must be " << type_name<T>() << ", got '"
                        << v.Scalar() << "'");
    }
  }

  void get(const char* key, std::vector<int>& out, size_t expected_size) {
    known_.insert(key);
    if (!present()) return;
    YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return;
    std::string full = dotted(key);
    MOE_CHECK(v.IsSequence() && v.size() == expected_size,
              source_ << ": key '" << full << "' must be a list of " << expected_size << " integers");
    out.clear();
    for (const auto& item : v) {
      try {
        out.push_back(item.as<int>());
      } catch (const YAML::Exception&) {
        MOE_THROW(source_ << ": key '" << full << "' must be a list of integers");
      }
    }
  }

  MapReader sub(const char* key) {
    known_.insert(key);
    return MapReader(present() ? node_[key] : YAML::Node(), dotted(key), source_);
  }

  // Throws on any key of this mapping that no get()/sub() asked for.
  void finish() const {
    if (!present()) return;
    for (const auto& kv : node_) {
      std::string key = kv.first.as<std::string>();
      if (known_.count(key)) continue;
      std::string allowed;
      for (const auto& k : known_) allowed += (allowed.empty() ? "" : ", ") + k;
      MOE_THROW(source_ << ": unknown key '" << dotted(key) << "' (known keys"
                        << (path_.empty() ? "" : " of '" + path_ + "'") << ": " << allowed << ")");
    }
  }

 private:
  bool present() const { return node_.IsDefined() && node_.IsMap(); }
  std::string dotted(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  YAML::Node node_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> known_;
};

void set_path(YAML::Node node, const std::vector<std::string>& keys, size_t i, const YAML::Node& value,
              const std::string& override_text) {
  if (i + 1 == keys.size()) {
    node[keys[i]] = value;
    return;
  }
  YAML::Node child = node[keys[i]];
  if (!child.IsDefined() || child.IsNull()) node[keys[i]] = YAML::Node(YAML::NodeType::Map);
  MOE_CHECK(node[keys[i]].IsMap(), "--set " << override_text << ": '" << keys[i] << "' is not a section");
  set_path(node[keys[i]], keys, i + 1, value, override_text);
}

void apply_override(YAML::Node& root, const std::string& text) {
  auto eq = text.find('=');
  MOE_CHECK(eq != std::string::npos && eq > 0, "--set expects key=value, got '" << text << "'");
  std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  std::vector<std::string> keys;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    MOE_CHECK(!part.empty(), "--set " << text << ": empty component in key '" << key << "'");
    keys.push_back(part);
  }
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value.empty() ? std::string("''") : value);
  } catch (const YAML::Exception& e) {
    MOE_THROW("--set " << text << ": value is not valid YAML (" << e.msg << ")");
  }
  set_path(root, keys, 0, parsed, text);
}

// Walks visit_config_fields with a stack of MapReaders, one per open section.
class ReadVisitor {
 public:
  explicit ReadVisitor(MapReader& root) { stack_.push_back(&root); }
  void begin(const char* key) {
    owned_.push_back(std::make_unique<MapReader>(stack_.back()->sub(key)));
    stack_.push_back(owned_.back().get());
  }
  void end() {
    stack_.back()->finish();
    stack_.pop_back();
  }
  template <class T>
  void field(const char* key, T& value) {
    stack_.back()->get(key, value);
  }
  void field(const char* key, std::vector<int>& value) { stack_.back()->get(key, value, 2); }

 private:
  std::vector<MapReader*> stack_;
  std::vector<std::unique_ptr<MapReader>> owned_;
};

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    MOE_THROW(source << ": not valid YAML (line " << e.mark.line + 1 << ": " << e.msg << ")");
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  MOE_CHECK(root.IsMap(), source << ": the top level must be a mapping (run:, model:, train:, ...)");
  for (const auto& o : overrides) apply_override(root, o);
  Config cfg;
  cfg.source = source;
  MapReader reader(root, "", cfg.source);
  ReadVisitor visitor(reader);
  visit_config_fields(cfg, visitor);
  reader.finish();
  return cfg;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), "config file '" << path << "' cannot be opened");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, overrides);
}

}  // namespace moe
