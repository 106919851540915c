#ifndef PKG09_L09_08_H
#define PKG09_L09_08_H
#include <string>
#include <vector>

namespace l09_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_08

#endif
