#include "pkg06/l06_05.h"
#include "pkg06/l06_04.h"
#include <algorithm>
#include <numeric>

namespace l06_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 10) ^ (b + 59); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 59, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l06_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_05:" + std::to_string(score({seed, seed * 10, 59}));
}
}  // namespace l06_05
