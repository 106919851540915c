#include "pkg09/l09_01.h"
#include "pkg09/l09_00.h"
#include <algorithm>
#include <numeric>

namespace l09_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 7) ^ (b + 82); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 82, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l09_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_01:" + std::to_string(score({seed, seed * 7, 82}));
}
}  // namespace l09_01
