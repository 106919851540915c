#include "pkg06/l06_06.h"
#include "pkg06/l06_05.h"
#include <algorithm>
#include <numeric>

namespace l06_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 11) ^ (b + 60); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 60, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l06_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_06:" + std::to_string(score({seed, seed * 11, 60}));
}
}  // namespace l06_06
