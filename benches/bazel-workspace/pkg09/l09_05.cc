#include "pkg09/l09_05.h"
#include "pkg09/l09_04.h"
#include <algorithm>
#include <numeric>

namespace l09_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 11) ^ (b + 86); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 86, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l09_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_05:" + std::to_string(score({seed, seed * 11, 86}));
}
}  // namespace l09_05
