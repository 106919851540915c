#include "pkg06/l06_02.h"
#include "pkg06/l06_01.h"
#include <algorithm>
#include <numeric>

namespace l06_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 7) ^ (b + 56); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 56, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l06_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_02:" + std::to_string(score({seed, seed * 7, 56}));
}
}  // namespace l06_02
