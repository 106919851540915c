#include "pkg06/l06_08.h"
#include "pkg06/l06_07.h"
#include <algorithm>
#include <numeric>

namespace l06_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 13) ^ (b + 62); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 62, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l06_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_08:" + std::to_string(score({seed, seed * 13, 62}));
}
}  // namespace l06_08
