// libFuzzer target: the results-store reader (io/results_store.hpp). Two halves, picked by the first byte:
//  - even: the rest is a serialized run (CBOR, the MPI wire format): deserialize must return a run that
//    serializes back to an equal run, or throw InputError;
//  - odd: the rest is a list of edits applied through the HDF5 API to a copy of a valid two-run store
//    (delete or retype an attribute, garbage params_json, drop or resize a column, stray groups and
//    datasets under /runs, a wrong schema version). The reader must then open the store or refuse it with
//    InputError, split its groups into complete and damaged ones, read every complete run, and
//    `fsck --drop` must leave a store without damaged groups.
// libhdf5's own file-format parser is not the target (the files are always well-formed HDF5).
#include <H5Cpp.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "io/errors.hpp"
#include "io/results_store.hpp"

namespace {
namespace fs = std::filesystem;
using namespace fp8flow;

fs::path dir() {
  static const fs::path d = [] {
    auto p = fs::temp_directory_path() / ("fp8flow-fuzz-store-" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p;
  }();
  return d;
}

io::RunRecord sample_run(const std::string& hash) {
  io::RunRecord r;
  r.hash = hash, r.kind = "transpose_study", r.experiment = "fuzz", r.label = "l", r.summary = "s";
  r.params = {{"seed", 1}, {"shape", {4, 8}}, {"distribution", "normal"}};
  r.attrs = {{"final_loss", 1.5}};
  r.provenance = io::Provenance::of_this_build();
  io::Table t;
  t.name = "metrics";
  t.add("method", "1", std::vector<std::string>{"a", "b"});
  t.add("rmse", "value", std::vector<double>{0.5, 0.25});
  t.add("count", "count", std::vector<std::int64_t>{3, 4});
  r.tables.push_back(t);
  io::Table h;
  h.name = "scale_log2";
  h.add("bin", "log2", std::vector<std::int64_t>{-1, 0});
  h.add("count", "count", std::vector<std::int64_t>{2, 5});
  r.histograms.push_back(h);
  r.tensors.push_back({"x", "input", {2, 2}, std::vector<float>{1, 2, 3, 4}});
  return r;
}

const fs::path& template_store() {
  static const fs::path p = [] {
    const fs::path f = dir() / "template.h5";
    fs::remove(f);
    io::append_run_once(f, sample_run("00000000000000aa"));
    io::append_run_once(f, sample_run("00000000000000bb"));
    return f;
  }();
  return p;
}

const char* const kAttrs[] = {"kind", "label", "summary", "experiment", "params_json", "threads", "start_time",
                              "attrs_json", "fp8flow_version", "host", "hash", "seed"};
const char* const kChildren[] = {"tables", "histograms", "tensors", "tables/metrics", "tables/metrics/rmse",
                                 "tables/metrics/method", "histograms/scale_log2/count", "tensors/x"};

void edit(H5::H5File& f, std::span<const std::uint8_t> ops) {
  std::size_t i = 0;
  auto next = [&]() -> std::uint8_t { return i < ops.size() ? ops[i++] : 0; };
  while (i < ops.size()) {
    const std::uint8_t op = next() % 9;
    const std::string run = std::string("/runs/") + (next() % 2 ? "00000000000000aa" : "00000000000000bb");
    try {
      if (!f.nameExists(run)) continue;
      H5::Group g = f.openGroup(run);
      const char* attr = kAttrs[next() % std::size(kAttrs)];
      const std::string child = kChildren[next() % std::size(kChildren)];
      switch (op) {
        case 0:
          if (g.attrExists(attr)) g.removeAttr(attr);
          break;
        case 1: {  // an integer where anything else was
          if (g.attrExists(attr)) g.removeAttr(attr);
          const std::int64_t v = next();
          g.createAttribute(attr, H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR))
              .write(H5::PredType::NATIVE_INT64, &v);
          break;
        }
        case 2: {  // text from the input (params_json, attrs_json, kind...)
          if (g.attrExists(attr)) g.removeAttr(attr);
          const std::size_t n = next() % 24;
          std::string s;
          for (std::size_t k = 0; k < n; ++k) s += char(next());
          H5::StrType t(H5::PredType::C_S1, H5T_VARIABLE);
          const char* c = s.c_str();
          g.createAttribute(attr, t, H5::DataSpace(H5S_SCALAR)).write(t, &c);
          break;
        }
        case 3:
          if (g.nameExists(child)) g.unlink(child);
          break;
        case 4: {  // a column of another length or type
          if (!g.nameExists(child) || g.childObjType(child) != H5O_TYPE_DATASET) break;
          g.unlink(child);
          const hsize_t n = next() % 5;
          H5::DataSpace sp(1, &n);
          std::vector<double> v(n, 1.0);
          H5::DataSet d = g.createDataSet(child, next() % 2 ? H5::PredType::NATIVE_DOUBLE : H5::PredType::NATIVE_INT8, sp);
          if (n) d.write(v.data(), H5::PredType::NATIVE_DOUBLE);
          break;
        }
        case 5:  // an empty run group, as an interrupted writer of an older version left it
          f.createGroup("/runs/" + std::to_string(next()) + "e");
          break;
        case 6: {  // a dataset where a run group belongs
          const hsize_t n = 1;
          f.createDataSet("/runs/" + std::to_string(next()) + "d", H5::PredType::NATIVE_INT8, H5::DataSpace(1, &n));
          break;
        }
        case 7: {  // the schema version
          if (f.attrExists("fp8flow_schema_version")) f.removeAttr("fp8flow_schema_version");
          const std::int64_t v = next() % 3;
          f.createAttribute("fp8flow_schema_version", H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR))
              .write(H5::PredType::NATIVE_INT64, &v);
          break;
        }
        case 8: {  // a table's column list naming other columns
          const std::string t = "tables/metrics";
          if (!g.nameExists(t)) break;
          H5::Group tg = g.openGroup(t);
          if (tg.attrExists("columns")) tg.removeAttr("columns");
          H5::StrType st(H5::PredType::C_S1, H5T_VARIABLE);
          const char* names[] = {"rmse", next() % 2 ? "nope" : "method"};
          const hsize_t n = next() % 3;
          tg.createAttribute("columns", st, H5::DataSpace(1, &n)).write(st, names);
          break;
        }
      }
    } catch (const H5::Exception&) {
      // an edit HDF5 refuses is simply not made
    }
  }
}

void check_store(std::span<const std::uint8_t> ops) {
  const fs::path f = dir() / "store.h5";
  fs::copy_file(template_store(), f, fs::copy_options::overwrite_existing);
  {
    H5::H5File h(f.string(), H5F_ACC_RDWR);
    edit(h, ops);
  }
  try {
    const io::ResultsFile r(f);
    const auto complete = r.hashes();
    if (complete.size() + r.damaged().size() != r.all_groups().size()) std::abort();
    for (const auto& h : complete) {
      (void)r.info(h);
      try {
        (void)io::to_json(r.read(h, true));
      } catch (const InputError&) {  // tensors are not part of the completeness check
        (void)io::to_json(r.read(h, false));
      }
    }
  } catch (const InputError&) {
    return;
  }
  try {
    (void)io::fsck_store(f, true);
    const io::ResultsFile again(f);
    if (!again.damaged().empty()) std::abort();
  } catch (const InputError&) {
  }
}

void check_wire(std::span<const std::uint8_t> bytes) {
  io::RunRecord r;
  try {
    r = io::deserialize(bytes);
  } catch (const InputError&) {
    return;
  }
  const auto again = io::deserialize(io::serialize(r));
  if (io::to_json(again) != io::to_json(r)) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::uint8_t> rest(data + 1, size - 1);
  if (data[0] % 2 == 0) check_wire(rest);
  else check_store(rest.first(std::min<std::size_t>(rest.size(), 64)));
  return 0;
}
