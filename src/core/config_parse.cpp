// YAML -> typed Config. A strict reader: every key must be known, every value of the right type;
// errors name the file, the dotted key and the rule.
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "core/config.h"
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

void read_config(MapReader& root, Config& c) {
  auto run = root.sub("run");
  run.get("name", c.run.name);
  run.get("out_dir", c.run.out_dir);
  run.get("seed", c.run.seed);
  run.finish();

  auto model = root.sub("model");
  auto& m = c.model;
  model.get("vocab_size", m.vocab_size);
  model.get("d_model", m.d_model);
  model.get("n_layers", m.n_layers);
  model.get("n_heads", m.n_heads);
  model.get("n_kv_heads", m.n_kv_heads);
  model.get("ffn_hidden", m.ffn_hidden);
  model.get("max_seq_len", m.max_seq_len);
  model.get("rope_theta", m.rope_theta);
  model.get("norm_eps", m.norm_eps);
  model.get("tie_embeddings", m.tie_embeddings);
  model.get("init_std", m.init_std);
  auto moe = model.sub("moe");
  auto& e = m.moe;
  moe.get("num_experts", e.num_experts);
  moe.get("top_k", e.top_k);
  moe.get("expert_hidden", e.expert_hidden);
  moe.get("num_shared_experts", e.num_shared_experts);
  moe.get("shared_expert_hidden", e.shared_expert_hidden);
  moe.get("first_dense_layers", e.first_dense_layers);
  moe.get("layer_freq", e.layer_freq);
  moe.get("score", e.score);
  moe.get("norm_topk", e.norm_topk);
  moe.get("capacity_factor", e.capacity_factor);
  moe.get("aux_loss_coef", e.aux_loss_coef);
  moe.get("z_loss_coef", e.z_loss_coef);
  moe.get("lbl_scope", e.lbl_scope);
  auto router = moe.sub("router");
  router.get("bias_update_rate", e.router.bias_update_rate);
  router.finish();
  moe.finish();
  model.finish();

  auto par = root.sub("parallel");
  par.get("tp", c.parallel.tp);
  par.get("ep", c.parallel.ep);
  par.get("expert_sharding", c.parallel.expert_sharding);
  par.get("zero", c.parallel.zero);
  par.finish();

  auto train = root.sub("train");
  auto& t = c.train;
  train.get("seq_len", t.seq_len);
  train.get("global_batch", t.global_batch);
  train.get("micro_batch", t.micro_batch);
  train.get("steps", t.steps);
  train.get("precision", t.precision);
  train.get("grad_clip", t.grad_clip);
  train.get("log_every", t.log_every);
  train.get("eval_every", t.eval_every);
  train.get("eval_batches", t.eval_batches);
  train.finish();

  auto optim = root.sub("optim");
  auto& o = c.optim;
  optim.get("lr", o.lr);
  optim.get("min_lr", o.min_lr);
  optim.get("warmup_steps", o.warmup_steps);
  optim.get("schedule", o.schedule);
  optim.get("beta1", o.beta1);
  optim.get("beta2", o.beta2);
  optim.get("eps", o.eps);
  optim.get("weight_decay", o.weight_decay);
  optim.finish();

  auto data = root.sub("data");
  data.get("train", c.data.train);
  data.get("valid", c.data.valid);
  data.get("token_dtype", c.data.token_dtype);
  data.get("shuffle", c.data.shuffle);
  data.finish();

  auto ckpt = root.sub("checkpoint");
  ckpt.get("dir", c.checkpoint.dir);
  ckpt.get("every", c.checkpoint.every);
  ckpt.get("keep", c.checkpoint.keep);
  ckpt.get("resume", c.checkpoint.resume);
  ckpt.get("init_from", c.checkpoint.init_from);
  ckpt.finish();

  auto prof = root.sub("profile");
  prof.get("breakdown_every", c.profile.breakdown_every);
  prof.get("trace", c.profile.trace);
  prof.get("trace_steps", c.profile.trace_steps, 2);
  prof.finish();

  root.finish();
}

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
  read_config(reader, cfg);
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
