// HTML run report with inline SVG charts.
#include "train/report_html.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/logging.h"

namespace moe {
namespace {

using json = nlohmann::json;

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (step, value)
};

const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                          "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd"};

constexpr double kW = 760, kH = 260, kL = 60, kR = 150, kT = 20, kB = 36;

std::string axes(double x0, double x1, double y0, double y1, const std::string& ylabel) {
  std::ostringstream s;
  s << "<line x1='" << kL << "' y1='" << kH - kB << "' x2='" << kW - kR << "' y2='" << kH - kB
    << "' stroke='#333'/><line x1='" << kL << "' y1='" << kT << "' x2='" << kL << "' y2='" << kH - kB
    << "' stroke='#333'/>";
  for (int i = 0; i <= 4; ++i) {
    double fx = x0 + (x1 - x0) * i / 4, fy = y0 + (y1 - y0) * i / 4;
    double px = kL + (kW - kL - kR) * i / 4, py = (kH - kB) - (kH - kB - kT) * i / 4;
    s << "<text x='" << px << "' y='" << kH - kB + 16 << "' font-size='11' text-anchor='middle'>" << strformat("%.0f", fx)
      << "</text><text x='" << kL - 6 << "' y='" << py + 4 << "' font-size='11' text-anchor='end'>"
      << strformat("%.3g", fy) << "</text>";
  }
  s << "<text x='" << (kL + kW - kR) / 2 << "' y='" << kH - 4 << "' font-size='12' text-anchor='middle'>step</text>"
    << "<text x='14' y='" << (kT + kH - kB) / 2 << "' font-size='12' transform='rotate(-90 14 "
    << (kT + kH - kB) / 2 << ")' text-anchor='middle'>" << ylabel << "</text>";
  return s.str();
}

std::string line_chart(const std::string& title, const std::vector<Series>& series, const std::string& ylabel) {
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (auto [x, y] : s.points) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (x0 > x1) return "<p>(no data for " + title + ")</p>";
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  auto px = [&](double x) { return kL + (kW - kL - kR) * (x - x0) / (x1 - x0); };
  auto py = [&](double y) { return (kH - kB) - (kH - kB - kT) * (y - y0) / (y1 - y0); };
  std::ostringstream s;
  s << "<h2>" << title << "</h2><svg width='" << kW << "' height='" << kH << "'>" << axes(x0, x1, y0, y1, ylabel);
  for (size_t i = 0; i < series.size(); ++i) {
    const char* c = kPalette[i % 14];
    s << "<polyline fill='none' stroke='" << c << "' stroke-width='1.5' points='";
    for (auto [x, y] : series[i].points) s << px(x) << "," << py(y) << " ";
    s << "'/><text x='" << kW - kR + 8 << "' y='" << kT + 14 * (i + 1) << "' font-size='11' fill='" << c << "'>"
      << series[i].name << "</text>";
  }
  return s.str() + "</svg>";
}

std::string stacked_chart(const std::vector<double>& steps, const std::vector<std::string>& phases,
                          const std::vector<std::map<std::string, double>>& rows) {
  double x0 = steps.front(), x1 = std::max(steps.back(), steps.front() + 1), y1 = 0;
  for (const auto& r : rows) {
    double t = 0;
    for (const auto& [k, v] : r) t += v;
    y1 = std::max(y1, t);
  }
  if (y1 <= 0) y1 = 1;
  auto px = [&](double x) { return kL + (kW - kL - kR) * (x - x0) / (x1 - x0); };
  auto py = [&](double y) { return (kH - kB) - (kH - kB - kT) * y / y1; };
  const double bar = std::max(1.0, (kW - kL - kR) / double(steps.size()) - 1);
  std::ostringstream s;
  s << "<h2>Step-time breakdown (ms per step, stacked by phase)</h2><svg width='" << kW << "' height='" << kH << "'>"
    << axes(x0, x1, 0, y1, "ms");
  for (size_t i = 0; i < steps.size(); ++i) {
    double base = 0;
    for (size_t p = 0; p < phases.size(); ++p) {
      auto it = rows[i].find(phases[p]);
      if (it == rows[i].end() || it->second <= 0) continue;
      s << "<rect x='" << px(steps[i]) - bar / 2 << "' y='" << py(base + it->second) << "' width='" << bar
        << "' height='" << py(base) - py(base + it->second) << "' fill='" << kPalette[p % 14] << "'><title>"
        << phases[p] << ": " << strformat("%.1f", it->second) << " ms</title></rect>";
      base += it->second;
    }
  }
  for (size_t p = 0; p < phases.size() && p < 16; ++p)
    s << "<text x='" << kW - kR + 8 << "' y='" << kT + 13 * (p + 1) << "' font-size='10' fill='" << kPalette[p % 14]
      << "'>" << phases[p] << "</text>";
  return s.str() + "</svg>";
}

std::string heat_map(const std::string& layer, const std::vector<double>& steps,
                     const std::vector<std::vector<double>>& loads) {  // loads[step][expert]
  const size_t E = loads.empty() ? 0 : loads[0].size();
  if (E == 0) return "";
  const double cell_w = std::max(2.0, (kW - kL - kR) / double(steps.size())), cell_h = std::min(14.0, 200.0 / E);
  const double height = kT + cell_h * E + kB;
  std::ostringstream s;
  s << "<h3>Layer " << layer << ": tokens per expert (darker: more; mean-relative)</h3><svg width='" << kW
    << "' height='" << height << "'>";
  for (size_t i = 0; i < steps.size(); ++i) {
    double mean = 0;
    for (double v : loads[i]) mean += v / double(E);
    for (size_t e = 0; e < E && e < loads[i].size(); ++e) {
      double r = mean > 0 ? std::min(2.0, loads[i][e] / mean) / 2.0 : 0;  // 0..1, 0.5 = balanced
      int c = int(255 - 215 * r);
      s << "<rect x='" << kL + cell_w * i << "' y='" << kT + cell_h * e << "' width='" << cell_w << "' height='"
        << cell_h << "' fill='rgb(" << c << "," << c << ",255)'><title>step " << steps[i] << ", expert " << e << ": "
        << loads[i][e] << " tokens</title></rect>";
    }
  }
  s << "<text x='" << kL - 6 << "' y='" << kT + 10 << "' font-size='10' text-anchor='end'>expert 0</text>"
    << "<text x='" << kL - 6 << "' y='" << kT + cell_h * E << "' font-size='10' text-anchor='end'>" << E - 1
    << "</text><text x='" << kL << "' y='" << height - 12 << "' font-size='11'>step " << steps.front() << " .. "
    << steps.back() << "</text>";
  return s.str() + "</svg>";
}

}  // namespace

std::string write_run_report(const std::string& run_dir) {
  const std::string metrics = run_dir + "/metrics.jsonl";
  std::ifstream in(metrics);
  MOE_CHECK(in.good(), "moe-report: '" << metrics << "' cannot be read");
  Series loss{"loss", {}}, ce{"ce", {}}, val{"val_loss", {}}, lr{"lr", {}}, tps{"tokens/s", {}};
  Series exposed{"exposed (in collectives or waiting)", {}}, overlapped{"overlapped with compute", {}};
  std::vector<double> steps;
  std::vector<std::map<std::string, double>> breakdown;
  std::map<std::string, std::vector<std::vector<double>>> loads;  // layer -> step -> expert
  std::map<std::string, Series> imbalance;
  std::map<std::string, double> phase_total;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    json m;
    try {
      m = json::parse(line);
    } catch (const json::exception& e) {
      MOE_THROW("moe-report: " << metrics << " line " << line_no << " is not JSON (" << e.what() << ")");
    }
    const double step = m.value("step", 0.0);
    steps.push_back(step);
    loss.points.emplace_back(step, m.value("loss", 0.0));
    ce.points.emplace_back(step, m.value("ce", 0.0));
    if (m.contains("val_loss")) val.points.emplace_back(step, m["val_loss"].get<double>());
    lr.points.emplace_back(step, m.value("lr", 0.0));
    tps.points.emplace_back(step, m.value("tokens_per_s", 0.0));
    if (m.contains("comm_exposed_ms")) {
      exposed.points.emplace_back(step, m["comm_exposed_ms"].get<double>());
      overlapped.points.emplace_back(step, m.value("comm_overlapped_ms", 0.0));
    }
    std::map<std::string, double> row;
    if (m.contains("breakdown_ms"))
      for (auto& [k, v] : m["breakdown_ms"].items()) row[k] = v.get<double>(), phase_total[k] += v.get<double>();
    breakdown.push_back(row);
    if (m.contains("expert_load"))
      for (auto& [layer, v] : m["expert_load"].items()) {
        std::vector<double> l = v.get<std::vector<double>>();
        double mean = 0, mx = 0;
        for (double x : l) mean += x / double(l.size()), mx = std::max(mx, x);
        loads[layer].push_back(l);
        imbalance[layer].name = "layer " + layer;
        imbalance[layer].points.emplace_back(step, mean > 0 ? mx / mean : 0.0);
      }
  }
  MOE_CHECK(!steps.empty(), "moe-report: " << metrics << " has no steps");
  std::vector<std::string> phases;
  for (auto& [k, v] : phase_total) phases.push_back(k);
  std::sort(phases.begin(), phases.end(), [&](auto& a, auto& b) { return phase_total[a] > phase_total[b]; });

  std::ostringstream html;
  html << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>moe-train report: " << run_dir
       << "</title><style>body{font-family:sans-serif;margin:24px;max-width:800px}h2{font-size:16px;margin-top:28px}"
          "h3{font-size:13px}</style></head><body><h1>moe-train run report</h1><p>"
       << run_dir << ": " << steps.size() << " logged steps, " << steps.front() << " to " << steps.back() << "</p>";
  std::vector<Series> losses = {loss, ce};
  if (!val.points.empty()) losses.push_back(val);
  html << line_chart("Loss", losses, "loss") << line_chart("Learning rate", {lr}, "lr")
       << line_chart("Throughput", {tps}, "tokens/s") << stacked_chart(steps, phases, breakdown);
  bool any_comm = false;
  for (auto& [step, ms] : exposed.points) any_comm |= ms > 0;
  for (auto& [step, ms] : overlapped.points) any_comm |= ms > 0;
  if (any_comm) html << line_chart("Communication (ms per step, rank 0)", {exposed, overlapped}, "ms");
  std::vector<Series> imb;
  for (auto& [layer, s] : imbalance) imb.push_back(s);
  if (!imb.empty()) html << line_chart("Expert load imbalance (max / mean tokens per expert)", imb, "max/mean");
  if (!loads.empty()) html << "<h2>Expert load per MoE layer</h2>";
  for (auto& [layer, l] : loads) html << heat_map(layer, steps, l);
  html << "</body></html>\n";
  const std::string out = run_dir + "/report.html";
  std::ofstream f(out, std::ios::trunc);
  MOE_CHECK(f.good(), "moe-report: cannot write '" << out << "'");
  f << html.str();
  return out;
}

}  // namespace moe
