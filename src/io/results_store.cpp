#include "io/results_store.hpp"

#include <H5Cpp.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <system_error>

#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "version.hpp"

namespace fp8flow::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// HDF5 prints its error stack to stderr by default; we turn every failure into an InputError instead.
void quiet_hdf5() {
  static const bool once = [] {
    H5::Exception::dontPrint();
    return true;
  }();
  (void)once;
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Names the HDF5 layout uses (docs/results-format.md).
constexpr const char* kRunsGroup = "/runs";
constexpr const char* kStagingGroup = "/staging";
constexpr const char* kSchemaAttr = "fp8flow_schema_version";

// ---- HDF5 types ----------------------------------------------------------------------------------
H5::StrType utf8_vlen() {
  H5::StrType t(H5::PredType::C_S1, H5T_VARIABLE);
  t.setCset(H5T_CSET_UTF8);
  return t;
}
// h5py's boolean: an int8 enum {FALSE = 0, TRUE = 1}, read back as numpy.bool_.
H5::EnumType bool_type() {
  H5::EnumType t(H5::PredType::NATIVE_INT8);
  std::int8_t v = 0;
  t.insert("FALSE", &v);
  v = 1;
  t.insert("TRUE", &v);
  return t;
}
H5::DataSpace vector_space(std::size_t n) {
  const hsize_t dims[1] = {n};
  return H5::DataSpace(1, dims);
}

// ---- Attributes ----------------------------------------------------------------------------------
void write_strings_attr(H5::H5Object& obj, const std::string& name, const std::vector<std::string>& v) {
  std::vector<const char*> ptrs;
  for (const auto& s : v) ptrs.push_back(s.c_str());
  auto a = obj.createAttribute(name, utf8_vlen(), vector_space(v.size()));
  if (!v.empty()) a.write(utf8_vlen(), ptrs.data());
}

// Scalars map to int64 / float64 / bool / UTF-8 string; flat arrays to 1-D arrays of one of those; anything
// else (objects, nested arrays, mixed arrays) is stored as its JSON text.
void write_attr(H5::H5Object& obj, const std::string& name, const json& v) {
  const H5::DataSpace scalar(H5S_SCALAR);
  if (v.is_string()) {
    obj.createAttribute(name, utf8_vlen(), scalar).write(utf8_vlen(), v.get<std::string>());
  } else if (v.is_boolean()) {
    const std::int8_t b = v.get<bool>() ? 1 : 0;
    obj.createAttribute(name, bool_type(), scalar).write(bool_type(), &b);
  } else if (v.is_number_integer()) {
    const std::int64_t i = v.get<std::int64_t>();
    obj.createAttribute(name, H5::PredType::NATIVE_INT64, scalar).write(H5::PredType::NATIVE_INT64, &i);
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    obj.createAttribute(name, H5::PredType::NATIVE_DOUBLE, scalar).write(H5::PredType::NATIVE_DOUBLE, &d);
  } else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number_integer(); })) {
    std::vector<std::int64_t> xs;
    for (const auto& e : v) xs.push_back(e.get<std::int64_t>());
    auto a = obj.createAttribute(name, H5::PredType::NATIVE_INT64, vector_space(xs.size()));
    if (!xs.empty()) a.write(H5::PredType::NATIVE_INT64, xs.data());
  } else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number(); })) {
    std::vector<double> xs;
    for (const auto& e : v) xs.push_back(e.get<double>());
    obj.createAttribute(name, H5::PredType::NATIVE_DOUBLE, vector_space(xs.size()))
        .write(H5::PredType::NATIVE_DOUBLE, xs.data());
  } else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_string(); })) {
    std::vector<std::string> xs;
    for (const auto& e : v) xs.push_back(e.get<std::string>());
    write_strings_attr(obj, name, xs);
  } else {
    obj.createAttribute(name, utf8_vlen(), scalar).write(utf8_vlen(), v.dump());
  }
}

std::vector<std::string> read_vlen_strings(const H5::Attribute& a) {
  const H5::DataSpace space = a.getSpace();
  const auto n = static_cast<std::size_t>(space.getSimpleExtentNpoints());
  std::vector<char*> ptrs(n, nullptr);
  if (n) a.read(a.getStrType(), ptrs.data());
  std::vector<std::string> out;
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  if (n) H5Dvlen_reclaim(a.getStrType().getId(), space.getId(), H5P_DEFAULT, ptrs.data());
  return out;
}

// The inverse of write_attr (JSON-text attributes come back as strings).
json read_attr(const H5::Attribute& a) {
  const H5T_class_t cls = a.getTypeClass();
  const H5::DataSpace space = a.getSpace();
  const bool scalar = space.getSimpleExtentType() == H5S_SCALAR;
  const auto n = static_cast<std::size_t>(space.getSimpleExtentNpoints());
  if (cls == H5T_STRING) {
    if (!a.getStrType().isVariableStr()) {
      std::string s;
      a.read(a.getStrType(), s);
      return s;
    }
    auto v = read_vlen_strings(a);
    return scalar ? json(v.empty() ? "" : v[0]) : json(v);
  }
  if (cls == H5T_ENUM) {
    if (a.getDataType().getSize() != 1) throw InputError(fmt::format("attribute '{}': unsupported enum", a.getName()));
    std::vector<std::int8_t> v(n);
    a.read(a.getDataType(), v.data());  // h5py's bool enum has an int8 base: read it as stored
    if (scalar) return v.at(0) != 0;
    json j = json::array();
    for (auto b : v) j.push_back(b != 0);
    return j;
  }
  if (cls == H5T_INTEGER) {
    std::vector<std::int64_t> v(n);
    if (n) a.read(H5::PredType::NATIVE_INT64, v.data());
    return scalar ? json(v.at(0)) : json(v);
  }
  if (cls == H5T_FLOAT) {
    std::vector<double> v(n);
    if (n) a.read(H5::PredType::NATIVE_DOUBLE, v.data());
    return scalar ? json(v.at(0)) : json(v);
  }
  throw InputError(fmt::format("attribute '{}': unsupported HDF5 type class {}", a.getName(), int(cls)));
}

json read_attr(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  if (!obj.attrExists(name)) throw InputError(fmt::format("{}: missing attribute '{}'", where, name));
  return read_attr(obj.openAttribute(name));
}
std::string read_string_attr(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  const json v = read_attr(obj, name, where);
  if (!v.is_string()) throw InputError(fmt::format("{}: attribute '{}' is not a string", where, name));
  return v.get<std::string>();
}

// ---- Datasets ------------------------------------------------------------------------------------
void write_column(H5::Group& g, const Column& c) {
  const H5::DataSpace space = vector_space(c.size());
  H5::DataSet d;
  if (const auto* v = std::get_if<std::vector<double>>(&c.values)) {
    d = g.createDataSet(c.name, H5::PredType::NATIVE_DOUBLE, space);
    if (!v->empty()) d.write(v->data(), H5::PredType::NATIVE_DOUBLE);
  } else if (const auto* v = std::get_if<std::vector<std::int64_t>>(&c.values)) {
    d = g.createDataSet(c.name, H5::PredType::NATIVE_INT64, space);
    if (!v->empty()) d.write(v->data(), H5::PredType::NATIVE_INT64);
  } else {
    const auto& s = std::get<std::vector<std::string>>(c.values);
    std::vector<const char*> ptrs;
    for (const auto& x : s) ptrs.push_back(x.c_str());
    d = g.createDataSet(c.name, utf8_vlen(), space);
    if (!s.empty()) d.write(ptrs.data(), utf8_vlen());
  }
  write_attr(d, "units", c.units);
}

void write_table(H5::Group& parent, const Table& t) {
  H5::Group g = parent.createGroup(t.name);
  std::vector<std::string> names;
  for (const Column& c : t.columns) {
    write_column(g, c);
    names.push_back(c.name);
  }
  write_strings_attr(g, "columns", names);
  write_attr(g, "description", t.description);
  for (const auto& [k, v] : t.attrs.items()) write_attr(g, k, v);
}

// Chunks of about 1 MiB, whole rows where they fit; deflate level 4 (a good speed/size point for codes).
void write_tensor(H5::Group& parent, const Tensor& t) {
  std::size_t count = 1;
  for (auto d : t.shape) count *= d;
  const bool f32 = std::holds_alternative<std::vector<float>>(t.values);
  const std::size_t have = f32 ? std::get<std::vector<float>>(t.values).size() : std::get<std::vector<std::uint8_t>>(t.values).size();
  if (have != count) throw std::logic_error(fmt::format("tensor {}: {} values for its shape", t.name, have));
  const std::size_t elem = f32 ? 4 : 1;
  std::vector<hsize_t> dims(t.shape.begin(), t.shape.end()), chunk(dims.size(), 1);
  std::size_t budget = std::max<std::size_t>(1, (std::size_t(1) << 20) / elem);
  for (std::size_t i = dims.size(); i-- > 0;) {
    chunk[i] = std::max<hsize_t>(1, std::min<hsize_t>(dims[i], budget));
    budget = std::max<std::size_t>(1, budget / std::max<hsize_t>(1, chunk[i]));
  }
  const H5::DataSpace space(int(dims.size()), dims.data());
  H5::DSetCreatPropList props;
  if (count > 0) {
    props.setChunk(int(chunk.size()), chunk.data());
    props.setDeflate(4);
  }
  const H5::PredType& type = f32 ? H5::PredType::NATIVE_FLOAT : H5::PredType::NATIVE_UINT8;
  H5::DataSet d = parent.createDataSet(t.name, type, space, props);
  if (count > 0) {
    if (f32) d.write(std::get<std::vector<float>>(t.values).data(), type);
    else d.write(std::get<std::vector<std::uint8_t>>(t.values).data(), type);
  }
  write_attr(d, "description", t.description);
}

void write_run_attrs(H5::Group& g, const RunRecord& r) {
  for (const auto& [k, v] : r.params.items()) write_attr(g, k, v);
  write_attr(g, "kind", r.kind);
  write_attr(g, "hash", r.hash);
  write_attr(g, "experiment", r.experiment);
  write_attr(g, "label", r.label);
  write_attr(g, "summary", r.summary);
  write_attr(g, "params_json", r.params.dump());
  for (const auto& [k, v] : r.attrs.items()) write_attr(g, k, v);
  if (!r.attrs.empty()) write_attr(g, "attrs_json", r.attrs.dump());
  const Provenance& p = r.provenance;
  write_attr(g, "fp8flow_version", p.fp8flow_version);
  write_attr(g, "git_commit", p.git_commit);
  write_attr(g, "compiler", p.compiler);
  write_attr(g, "build_type", p.build_type);
  write_attr(g, "cxx_flags", p.cxx_flags);
  write_attr(g, "host", p.host);
  write_attr(g, "start_time", p.start_time);
  write_attr(g, "end_time", p.end_time);
  write_attr(g, "threads", p.threads);
}

// A run is built under /staging/<hash>-<pid> and moved to /runs/<hash> as the very last step, so even
// inside the (unpublished) copy a run under /runs is always complete.
void write_run(H5::H5File& f, const RunRecord& r) {
  H5::Group staging = f.nameExists(kStagingGroup) ? f.openGroup(kStagingGroup) : f.createGroup(kStagingGroup);
  const std::string tmp = fmt::format("{}-{}", r.hash, ::getpid());
  {
    H5::Group g = staging.createGroup(tmp);
    write_run_attrs(g, r);
    H5::Group tables = g.createGroup("tables");
    for (const Table& t : r.tables) write_table(tables, t);
    H5::Group hists = g.createGroup("histograms");
    for (const Table& t : r.histograms) write_table(hists, t);
    if (!r.tensors.empty()) {
      H5::Group tensors = g.createGroup("tensors");
      for (const Tensor& t : r.tensors) write_tensor(tensors, t);
    }
  }
  H5::Group runs = f.openGroup(kRunsGroup);
  if (H5Lmove(staging.getId(), tmp.c_str(), runs.getId(), r.hash.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
    throw InputError(fmt::format("cannot move staged run {} into {}", r.hash, kRunsGroup));
}

Column read_column(const H5::DataSet& d, const std::string& name, const std::string& where) {
  Column c;
  c.name = name;
  c.units = d.attrExists("units") ? read_attr(d.openAttribute("units")).get<std::string>() : "";
  const H5::DataSpace space = d.getSpace();
  if (space.getSimpleExtentNdims() != 1) throw InputError(fmt::format("{}/{}: expected a 1-D column", where, name));
  const auto n = static_cast<std::size_t>(space.getSimpleExtentNpoints());
  switch (d.getTypeClass()) {
    case H5T_FLOAT: {
      std::vector<double> v(n);
      if (n) d.read(v.data(), H5::PredType::NATIVE_DOUBLE);
      c.values = std::move(v);
      break;
    }
    case H5T_INTEGER: {
      std::vector<std::int64_t> v(n);
      if (n) d.read(v.data(), H5::PredType::NATIVE_INT64);
      c.values = std::move(v);
      break;
    }
    case H5T_STRING: {
      const H5::StrType st = d.getStrType();
      if (!st.isVariableStr()) throw InputError(fmt::format("{}/{}: fixed-length strings are not fp8flow's", where, name));
      std::vector<char*> ptrs(n, nullptr);
      if (n) d.read(ptrs.data(), st);
      std::vector<std::string> v;
      for (char* p : ptrs) v.emplace_back(p ? p : "");
      if (n) H5Dvlen_reclaim(st.getId(), space.getId(), H5P_DEFAULT, ptrs.data());
      c.values = std::move(v);
      break;
    }
    default:
      throw InputError(fmt::format("{}/{}: unsupported column type", where, name));
  }
  return c;
}

Table read_table(const H5::Group& parent, const std::string& name, const std::string& where) {
  const std::string path = where + "/" + name;
  Table t;
  t.name = name;
  H5::Group g = parent.openGroup(name);
  const json cols = read_attr(g, "columns", path);
  if (!cols.is_array()) throw InputError(fmt::format("{}: attribute 'columns' is not a list of names", path));
  for (int i = 0; i < g.getNumAttrs(); ++i) {
    const H5::Attribute a = g.openAttribute(static_cast<unsigned>(i));
    const std::string an = a.getName();
    if (an == "columns") continue;
    if (an == "description") t.description = read_attr(a).get<std::string>();
    else t.attrs[an] = read_attr(a);
  }
  for (const auto& c : cols) {
    const std::string cn = c.get<std::string>();
    if (!g.nameExists(cn)) throw InputError(fmt::format("{}: missing dataset '{}'", path, cn));
    t.columns.push_back(read_column(g.openDataSet(cn), cn, path));
    if (t.columns.back().size() != t.columns.front().size())
      throw InputError(fmt::format("{}/{}: {} rows, expected {}", path, cn, t.columns.back().size(), t.columns.front().size()));
  }
  return t;
}

std::vector<std::string> child_names(const H5::Group& g) {
  std::vector<std::string> out;
  for (hsize_t i = 0; i < g.getNumObjs(); ++i) out.push_back(g.getObjnameByIdx(i));
  std::sort(out.begin(), out.end());
  return out;
}

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) throw InputError(fmt::format("{}: cannot open to sync: {}", p.string(), std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw InputError(fmt::format("{}: fsync failed: {}", p.string(), std::strerror(err)));
}

void create_store(const fs::path& p) {
  H5::H5File f(p.string(), H5F_ACC_TRUNC);
  write_attr(f, kSchemaAttr, kSchemaVersion);
  write_attr(f, "creator", fmt::format("fp8flow {} ({})", kVersion, kGitCommit));
  write_attr(f, "created", iso8601_utc_now());
  f.createGroup(kRunsGroup);
}

// ---- JSON / CBOR ---------------------------------------------------------------------------------
template <class T>
json::binary_t to_binary(const std::vector<T>& v) {
  std::vector<std::uint8_t> bytes(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
  return json::binary_t(std::move(bytes));
}
template <class T>
std::vector<T> from_binary(const json& j) {
  const auto& b = j.get_binary();
  if (b.size() % sizeof(T)) throw InputError("serialized run: binary array of the wrong length");
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

json table_to_wire(const Table& t) {
  json cols = json::array();
  for (const Column& c : t.columns) {
    json jc = {{"name", c.name}, {"units", c.units}};
    if (const auto* v = std::get_if<std::vector<double>>(&c.values)) jc["f64"] = json::binary(to_binary(*v));
    else if (const auto* v = std::get_if<std::vector<std::int64_t>>(&c.values)) jc["i64"] = json::binary(to_binary(*v));
    else jc["str"] = std::get<std::vector<std::string>>(c.values);
    cols.push_back(std::move(jc));
  }
  return {{"name", t.name}, {"description", t.description}, {"attrs", t.attrs}, {"columns", std::move(cols)}};
}
Table table_from_wire(const json& j) {
  Table t;
  t.name = j.at("name");
  t.description = j.at("description");
  t.attrs = j.at("attrs");
  for (const auto& jc : j.at("columns")) {
    Column c;
    c.name = jc.at("name");
    c.units = jc.at("units");
    if (jc.contains("f64")) c.values = from_binary<double>(jc["f64"]);
    else if (jc.contains("i64")) c.values = from_binary<std::int64_t>(jc["i64"]);
    else c.values = jc.at("str").get<std::vector<std::string>>();
    t.columns.push_back(std::move(c));
  }
  return t;
}

json provenance_json(const Provenance& p) {
  return {{"fp8flow_version", p.fp8flow_version}, {"git_commit", p.git_commit}, {"compiler", p.compiler},
          {"build_type", p.build_type},           {"cxx_flags", p.cxx_flags},   {"host", p.host},
          {"start_time", p.start_time},           {"end_time", p.end_time},     {"threads", p.threads}};
}
Provenance provenance_from_json(const json& j) {
  Provenance p;
  p.fp8flow_version = j.at("fp8flow_version");
  p.git_commit = j.at("git_commit");
  p.compiler = j.at("compiler");
  p.build_type = j.at("build_type");
  p.cxx_flags = j.at("cxx_flags");
  p.host = j.at("host");
  p.start_time = j.at("start_time");
  p.end_time = j.at("end_time");
  p.threads = j.at("threads");
  return p;
}

json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json table_to_json(const Table& t) {
  json cols = json::object(), units = json::object();
  for (const Column& c : t.columns) {
    units[c.name] = c.units;
    json& out = cols[c.name] = json::array();
    if (const auto* v = std::get_if<std::vector<double>>(&c.values))
      for (double d : *v) out.push_back(finite_or_null(d));
    else if (const auto* v = std::get_if<std::vector<std::int64_t>>(&c.values)) out = *v;
    else out = std::get<std::vector<std::string>>(c.values);
  }
  return {{"description", t.description}, {"attrs", t.attrs}, {"units", units}, {"columns", cols}};
}

}  // namespace

// ---- Model ---------------------------------------------------------------------------------------

std::size_t Column::size() const {
  return std::visit([](const auto& v) { return v.size(); }, values);
}

Table& Table::add(std::string name, std::string units, decltype(Column::values) values) {
  Column c{std::move(name), std::move(units), std::move(values)};
  if (!columns.empty() && c.size() != rows())
    throw std::logic_error(fmt::format("table {}: column {} has {} rows, expected {}", this->name, c.name, c.size(), rows()));
  columns.push_back(std::move(c));
  return *this;
}

const Column* Table::find(std::string_view n) const {
  for (const Column& c : columns)
    if (c.name == n) return &c;
  return nullptr;
}

std::string iso8601_utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms);
}

Provenance Provenance::of_this_build() {
  Provenance p;
  p.fp8flow_version = kVersion;
  p.git_commit = kGitCommit;
  p.compiler = kCompiler;
  p.build_type = kBuildType;
  p.cxx_flags = kCxxFlags;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) p.host = host;
  return p;
}

std::vector<std::uint8_t> serialize(const RunRecord& r) {
  json j = {{"hash", r.hash}, {"kind", r.kind}, {"experiment", r.experiment}, {"label", r.label},
            {"summary", r.summary}, {"params", r.params}, {"provenance", provenance_json(r.provenance)}};
  if (!r.attrs.empty()) j["attrs"] = r.attrs;
  for (const Table& t : r.tables) j["tables"].push_back(table_to_wire(t));
  for (const Table& t : r.histograms) j["histograms"].push_back(table_to_wire(t));
  for (const Tensor& t : r.tensors) {
    json jt = {{"name", t.name}, {"description", t.description}, {"shape", t.shape}};
    if (const auto* v = std::get_if<std::vector<float>>(&t.values)) jt["f32"] = json::binary(to_binary(*v));
    else jt["u8"] = json::binary(std::get<std::vector<std::uint8_t>>(t.values));
    j["tensors"].push_back(std::move(jt));
  }
  return json::to_cbor(j);
}

RunRecord deserialize(std::span<const std::uint8_t> bytes) {
  try {
    const json j = json::from_cbor(bytes.begin(), bytes.end());
    RunRecord r;
    r.hash = j.at("hash");
    r.kind = j.at("kind");
    r.experiment = j.at("experiment");
    r.label = j.at("label");
    r.summary = j.at("summary");
    r.params = j.at("params");
    r.provenance = provenance_from_json(j.at("provenance"));
    if (j.contains("attrs")) r.attrs = j["attrs"];
    if (j.contains("tables"))
      for (const auto& t : j["tables"]) r.tables.push_back(table_from_wire(t));
    if (j.contains("histograms"))
      for (const auto& t : j["histograms"]) r.histograms.push_back(table_from_wire(t));
    if (j.contains("tensors"))
      for (const auto& jt : j["tensors"]) {
        Tensor t;
        t.name = jt.at("name");
        t.description = jt.at("description");
        t.shape = jt.at("shape").get<std::vector<std::size_t>>();
        if (jt.contains("f32")) t.values = from_binary<float>(jt["f32"]);
        else t.values = jt.at("u8").get_binary();
        r.tensors.push_back(std::move(t));
      }
    return r;
  } catch (const json::exception& e) {
    throw InputError(fmt::format("serialized run: {}", e.what()));
  }
}

json to_json(const RunRecord& r) {
  json j = {{"hash", r.hash}, {"kind", r.kind}, {"experiment", r.experiment}, {"label", r.label},
            {"summary", r.summary}, {"params", r.params}, {"provenance", provenance_json(r.provenance)},
            {"tables", json::object()}, {"histograms", json::object()}, {"tensors", json::object()}};
  if (!r.attrs.empty()) j["attrs"] = r.attrs;
  for (const Table& t : r.tables) j["tables"][t.name] = table_to_json(t);
  for (const Table& t : r.histograms) j["histograms"][t.name] = table_to_json(t);
  for (const Tensor& t : r.tensors)
    j["tensors"][t.name] = {{"shape", t.shape},
                            {"dtype", std::holds_alternative<std::vector<float>>(t.values) ? "float32" : "uint8"},
                            {"description", t.description}};
  return j;
}

// ---- Reading -------------------------------------------------------------------------------------

struct ResultsFile::Impl {
  H5::H5File file;
  bool scanned = false;
  std::vector<std::string> healthy;
  std::vector<DamagedRun> damaged;
};

ResultsFile::ResultsFile(const fs::path& file) : path_(file), impl_(nullptr) {
  quiet_hdf5();
  const std::string name = file.string();
  std::error_code ec;
  if (!fs::exists(file, ec)) throw InputError(fmt::format("{}: no such file", name));
  if (!fs::is_regular_file(file, ec)) throw InputError(fmt::format("{}: not a regular file", name));
  if (H5Fis_hdf5(name.c_str()) <= 0)
    throw InputError(fmt::format("{}: not an HDF5 file (expected an fp8flow results store written by `fp8flow run`)", name));
  auto impl = std::make_unique<Impl>();
  try {
    impl->file.openFile(name, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    throw InputError(fmt::format("{}: cannot open as HDF5 ({}): the file is damaged or truncated", name, e.getDetailMsg()));
  }
  try {
    if (!impl->file.attrExists(kSchemaAttr))
      throw InputError(fmt::format("{}: an HDF5 file but not an fp8flow results store (no root attribute '{}')", name,
                                   kSchemaAttr));
    const json v = read_attr(impl->file.openAttribute(kSchemaAttr));
    if (!v.is_number_integer() || v.get<std::int64_t>() != kSchemaVersion)
      throw InputError(fmt::format("{}: results schema version {}, this fp8flow ({}) reads version {}", name, v.dump(),
                                   kVersion, kSchemaVersion));
    if (!impl->file.nameExists(kRunsGroup)) throw InputError(fmt::format("{}: missing group {}", name, kRunsGroup));
  } catch (const H5::Exception& e) {
    throw InputError(fmt::format("{}: malformed results store: {}", name, e.getDetailMsg()));
  }
  impl_ = impl.release();
}

ResultsFile::~ResultsFile() { delete impl_; }

std::vector<std::string> ResultsFile::all_groups() const {
  try {
    return child_names(impl_->file.openGroup(kRunsGroup));
  } catch (const H5::Exception& e) {
    throw InputError(fmt::format("{}: cannot list {}: {}", path_.string(), kRunsGroup, e.getDetailMsg()));
  }
}

void ResultsFile::scan() const {
  if (impl_->scanned) return;
  for (const std::string& h : all_groups()) {
    try {
      if (impl_->file.childObjType(std::string(kRunsGroup) + "/" + h) != H5O_TYPE_GROUP)
        throw InputError(fmt::format("{}:{}/{}: not a group", path_.string(), kRunsGroup, h));
      (void)read(h, false);  // every attribute, table and histogram parses
      impl_->healthy.push_back(h);
    } catch (const std::exception& e) {
      impl_->damaged.push_back({h, e.what()});
    } catch (const H5::Exception& e) {
      impl_->damaged.push_back({h, fmt::format("{}:{}/{}: {}", path_.string(), kRunsGroup, h, e.getDetailMsg())});
    }
  }
  impl_->scanned = true;
}

std::vector<std::string> ResultsFile::hashes() const {
  scan();
  return impl_->healthy;
}

const std::vector<DamagedRun>& ResultsFile::damaged() const {
  scan();
  return impl_->damaged;
}

RunInfo ResultsFile::info(const std::string& hash) const {
  const std::string where = fmt::format("{}:{}/{}", path_.string(), kRunsGroup, hash);
  try {
    const H5::Group g = impl_->file.openGroup(std::string(kRunsGroup) + "/" + hash);
    RunInfo i;
    i.hash = hash;
    i.kind = read_string_attr(g, "kind", where);
    i.label = read_string_attr(g, "label", where);
    i.summary = read_string_attr(g, "summary", where);
    i.experiment = read_string_attr(g, "experiment", where);
    const std::string pj = read_string_attr(g, "params_json", where);
    i.params = json::parse(pj, nullptr, false);
    if (i.params.is_discarded() || !i.params.is_object())
      throw InputError(fmt::format("{}: attribute 'params_json' is not a JSON object", where));
    return i;
  } catch (const H5::Exception& e) {
    throw InputError(fmt::format("{}: {}", where, e.getDetailMsg()));
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{}: {}", where, e.what()));
  }
}

RunRecord ResultsFile::read(const std::string& hash, bool with_tensors) const {
  const std::string where = fmt::format("{}:{}/{}", path_.string(), kRunsGroup, hash);
  const RunInfo i = info(hash);
  RunRecord r;
  r.hash = i.hash;
  r.kind = i.kind;
  r.label = i.label;
  r.summary = i.summary;
  r.experiment = i.experiment;
  r.params = i.params;
  try {
    const H5::Group g = impl_->file.openGroup(std::string(kRunsGroup) + "/" + hash);
    Provenance& p = r.provenance;
    p.fp8flow_version = read_string_attr(g, "fp8flow_version", where);
    p.git_commit = read_string_attr(g, "git_commit", where);
    p.compiler = read_string_attr(g, "compiler", where);
    p.build_type = read_string_attr(g, "build_type", where);
    p.cxx_flags = read_string_attr(g, "cxx_flags", where);
    p.host = read_string_attr(g, "host", where);
    p.start_time = read_string_attr(g, "start_time", where);
    p.end_time = read_string_attr(g, "end_time", where);
    p.threads = read_attr(g, "threads", where).get<std::int64_t>();
    if (g.attrExists("attrs_json")) {
      r.attrs = json::parse(read_string_attr(g, "attrs_json", where), nullptr, false);
      if (r.attrs.is_discarded()) throw InputError(fmt::format("{}: attribute 'attrs_json' is not JSON", where));
    }
    for (const char* sub : {"tables", "histograms"}) {
      if (!g.nameExists(sub)) throw InputError(fmt::format("{}: missing group '{}'", where, sub));
      const H5::Group tg = g.openGroup(sub);
      auto& out = std::string_view(sub) == "tables" ? r.tables : r.histograms;
      for (const auto& n : child_names(tg)) out.push_back(read_table(tg, n, where + "/" + sub));
    }
    if (with_tensors && g.nameExists("tensors")) {
      const H5::Group tg = g.openGroup("tensors");
      for (const auto& n : child_names(tg)) {
        const H5::DataSet d = tg.openDataSet(n);
        const H5::DataSpace s = d.getSpace();
        std::vector<hsize_t> dims(s.getSimpleExtentNdims());
        s.getSimpleExtentDims(dims.data());
        Tensor t;
        t.name = n;
        t.shape.assign(dims.begin(), dims.end());
        if (d.attrExists("description")) t.description = read_attr(d.openAttribute("description")).get<std::string>();
        const auto count = static_cast<std::size_t>(s.getSimpleExtentNpoints());
        if (d.getTypeClass() == H5T_FLOAT) {
          std::vector<float> v(count);
          if (count) d.read(v.data(), H5::PredType::NATIVE_FLOAT);
          t.values = std::move(v);
        } else {
          std::vector<std::uint8_t> v(count);
          if (count) d.read(v.data(), H5::PredType::NATIVE_UINT8);
          t.values = std::move(v);
        }
        r.tensors.push_back(std::move(t));
      }
    }
  } catch (const H5::Exception& e) {
    throw InputError(fmt::format("{}: {}", where, e.getDetailMsg()));
  } catch (const json::exception& e) {  // an attribute of the wrong type (a number where text belongs, ...)
    throw InputError(fmt::format("{}: {}", where, e.what()));
  }
  return r;
}

std::string ResultsFile::resolve(std::string_view prefix) const {
  if (prefix.empty()) throw InputError(fmt::format("{}: empty run id", path_.string()));
  std::vector<std::string> hits;
  for (auto& h : hashes())
    if (h.starts_with(prefix)) hits.push_back(h);
  if (hits.empty())
    for (const DamagedRun& d : damaged())
      if (d.hash.starts_with(prefix))
        throw InputError(fmt::format("run {} is damaged and cannot be read: {} (`fp8flow fsck {} --drop` removes it)",
                                     d.hash, d.reason, path_.string()));
  if (hits.empty()) throw InputError(fmt::format("{}: no run whose hash starts with '{}' (see `fp8flow ls {}`)",
                                                 path_.string(), prefix, path_.string()));
  if (hits.size() > 1)
    throw InputError(fmt::format("{}: '{}' matches {} runs ({}{}); give more digits", path_.string(), prefix,
                                 hits.size(), fmt::join(hits.begin(), hits.begin() + std::min<std::size_t>(hits.size(), 4), ", "),
                                 hits.size() > 4 ? ", ..." : ""));
  return hits.front();
}

std::set<std::string> existing_runs(const fs::path& file) {
  const OutputTarget t = resolve_output(file, false);
  if (!t.exists) return {};
  const ResultsFile f(t.path);
  if (!f.damaged().empty()) {
    const DamagedRun& d = f.damaged().front();
    throw InputError(fmt::format("{}: {} damaged or incomplete run group{} ({}{}); fp8flow does not add runs to a "
                                 "damaged store: `fp8flow fsck {} --drop` removes them",
                                 file.string(), f.damaged().size(), f.damaged().size() == 1 ? "" : "s", d.reason,
                                 f.damaged().size() > 1 ? ", ..." : "", file.string()));
  }
  const auto h = f.hashes();
  return {h.begin(), h.end()};
}

FsckReport fsck_store(const fs::path& file, bool drop) {
  FsckReport r;
  {
    const ResultsFile f(file);
    r.healthy = f.hashes().size();
    r.damaged = f.damaged();
  }
  if (!drop || r.damaged.empty()) return r;
  const OutputTarget t = resolve_output(file, false);
  FileLock lock(t.path);
  const fs::path tmp = partial_path(t.path);
  try {
    fs::copy_file(t.path, tmp, fs::copy_options::overwrite_existing);
    {
      H5::H5File f(tmp.string(), H5F_ACC_RDWR);
      for (const DamagedRun& d : r.damaged) f.unlink(std::string(kRunsGroup) + "/" + d.hash);
      if (f.nameExists(kStagingGroup)) f.unlink(kStagingGroup);
    }
    fs::permissions(tmp, t.perms);
    fsync_path(tmp, false);
    fs::rename(tmp, t.path);
    fsync_path(t.path.has_parent_path() ? t.path.parent_path() : fs::path("."), true);
  } catch (const H5::Exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw InputError(fmt::format("{}: dropping damaged runs failed: {}", file.string(), e.getDetailMsg()));
  } catch (const fs::filesystem_error& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw InputError(fmt::format("{}: {}", file.string(), e.what()));
  }
  r.dropped = r.damaged.size();
  return r;
}

bool append_run_once(const fs::path& file, RunRecord rec) {
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  ResultsWriter w(file, 0.0);
  if (w.complete().contains(rec.hash)) return false;
  if (rec.provenance.start_time.empty()) rec.provenance.start_time = iso8601_utc_now();
  if (rec.provenance.end_time.empty()) rec.provenance.end_time = iso8601_utc_now();
  w.add(std::move(rec));
  w.commit();
  return true;
}

// ---- Writing -------------------------------------------------------------------------------------

// The path a writer works on: a symlink's target (the link stays a link), after refusing what cannot be a
// store -- an empty name, a directory, a device such as /dev/null, a read-only file -- before any lock
// file is created.
fs::path checked_store_path(const fs::path& file) {
  if (file.empty()) throw InputError("empty results file name: give a path such as results/out.h5");
  try {
    return resolve_output(file, false).path;
  } catch (const InputError& e) {
    throw InputError(fmt::format("{} (an HDF5 results store must be a regular, writable file)", e.what()));
  }
}

// The lock belongs to the file itself, not to the name it was reached by: a symlink and its target, or
// a/../a.h5 and a.h5, share one lock. A file that does not exist yet is named by its resolved directory.
fs::path FileLock::lock_path(const fs::path& file) {
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(fs::absolute(file, ec), ec);
  if (ec || resolved.empty()) resolved = file;
  return resolved += ".lock";
}

FileLock::FileLock(const fs::path& file) {
  if (file.empty()) throw InputError("empty results file name");
  const fs::path lp = lock_path(file);
  if (file.has_parent_path()) {  // results/quickstart.h5 on a fresh checkout
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
  }
  // Unlocking removes the lock file, so a lock taken on a file that was just unlinked is no lock: take it
  // again until the locked file is the one the path names.
  for (int attempt = 0;; ++attempt) {
    fd_ = ::open(lp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0)
      throw InputError(fmt::format("{}: cannot create lock file {}: {}", file.string(), lp.string(), std::strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char buf[128] = {};
      const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
      ::close(fd_);
      fd_ = -1;
      std::string holder = n > 0 ? std::string(buf, std::size_t(n)) : std::string("unknown");
      holder.erase(std::find(holder.begin(), holder.end(), '\n'), holder.end());
      if (err == EWOULDBLOCK)
        throw InputError(fmt::format("{}: another fp8flow is writing this file (pid {}, lock {}); wait for it to finish "
                                     "or write to another file",
                                     file.string(), holder, lp.string()));
      throw InputError(fmt::format("{}: cannot lock {}: {}", file.string(), lp.string(), std::strerror(err)));
    }
    struct stat held {}, named {};
    if (::fstat(fd_, &held) == 0 && ::stat(lp.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino)
      break;
    ::close(fd_);
    fd_ = -1;
    if (attempt > 100) throw InputError(fmt::format("{}: cannot lock {}: it keeps changing", file.string(), lp.string()));
  }
  path_ = lp;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string who = fmt::format("{}\n{}\n", ::getpid(), host);
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, who.data(), who.size(), 0) != ssize_t(who.size())) {
    // The pid is only for the message of a second writer; the lock itself holds.
  }
}

FileLock::~FileLock() {
  if (fd_ < 0) return;
  std::error_code ignored;
  fs::remove(path_, ignored);  // while still holding it: a waiter that opened it retries (see above)
  ::close(fd_);                // releases the flock
}

ResultsWriter::ResultsWriter(const fs::path& file, double commit_interval_s)
    : file_(checked_store_path(file)), lock_(file_), interval_s_(commit_interval_s), min_interval_s_(commit_interval_s) {
  quiet_hdf5();
  complete_ = existing_runs(file_);
  // Under the lock no other writer exists, so any <file>.partial-* is left by a killed one.
  const fs::path dir = file_.has_parent_path() ? file_.parent_path() : fs::path(".");
  const std::string stem = file_.filename().string() + ".partial-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(stem)) fs::remove(e.path(), ec);
  last_commit_ = steady_seconds();
}

ResultsWriter::~ResultsWriter() = default;

void ResultsWriter::add(RunRecord r) {
  if (complete_.contains(r.hash))
    throw InputError(fmt::format("{}: run {} is already in the file (the store is append-only; use --resume to skip "
                                 "complete runs)",
                                 file_.string(), r.hash));
  for (const Tensor& t : r.tensors)
    pending_bytes_ += std::holds_alternative<std::vector<float>>(t.values) ? 4 * std::get<0>(t.values).size()
                                                                           : std::get<1>(t.values).size();
  pending_.push_back(std::move(r));
  constexpr std::size_t kMaxPendingBytes = std::size_t(256) << 20;
  if (steady_seconds() - last_commit_ >= interval_s_ || pending_bytes_ > kMaxPendingBytes) commit();
}

void ResultsWriter::commit() {
  if (pending_.empty()) return;
  const double t0 = steady_seconds();
  const fs::path tmp = partial_path(file_);
  try {
    const OutputTarget t = resolve_output(file_, false);  // still writable, still a file
    if (t.exists) {
      fs::copy_file(file_, tmp, fs::copy_options::overwrite_existing);
      fs::permissions(tmp, t.perms | fs::perms::owner_write);
    } else {
      create_store(tmp);
    }
    {
      H5::H5File f(tmp.string(), H5F_ACC_RDWR);
      for (const RunRecord& r : pending_) write_run(f, r);
      f.unlink(kStagingGroup);
    }  // every object closed here, so the file is closed
    if (t.exists) fs::permissions(tmp, t.perms);  // the store keeps its mode
    fsync_path(tmp, false);
    fs::rename(tmp, file_);
    fsync_path(file_.has_parent_path() ? file_.parent_path() : fs::path("."), true);
  } catch (const H5::Exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw InputError(fmt::format("{}: writing runs failed: {} ({})", file_.string(), e.getDetailMsg(), e.getFuncName()));
  } catch (const fs::filesystem_error& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw InputError(fmt::format("{}: {}", file_.string(), e.what()));
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
  for (const RunRecord& r : pending_) complete_.insert(r.hash);
  pending_.clear();
  pending_bytes_ = 0;
  ++commits_;
  last_commit_ = steady_seconds();
  // 0 means every run, as asked; otherwise copying the file stays a modest share of the time.
  if (min_interval_s_ > 0) interval_s_ = std::max(min_interval_s_, 3 * (last_commit_ - t0));
}

}  // namespace fp8flow::io
